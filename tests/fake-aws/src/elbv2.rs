//! The four ELBv2 actions on the fake's state, answered as AWS documents
//! them (XML bodies, error codes and messages).

use crate::state::{AwsError, Draining, LateRegistration, State, Target, TargetGroup, TargetSpec};
use crate::wire::{param, xml_escape};
use crate::{ELB_ACTIONS, LOAD_BALANCER_ARN, VPC_ID};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

impl State {
    pub(crate) fn elb(
        &mut self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        if !ELB_ACTIONS.contains(&action) {
            return Err(AwsError::new(
                400,
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            ));
        }
        match param(params, "Version") {
            Some("2015-12-01") => {}
            v => {
                return Err(AwsError::new(
                    400,
                    "InvalidAction",
                    format!(
                        "Could not find operation {action} for version {}",
                        v.unwrap_or("NO_VERSION_SPECIFIED")
                    ),
                ))
            }
        }
        match action {
            "DescribeTargetGroups" => self.describe_target_groups(params),
            "DescribeTargetGroupAttributes" => self.describe_target_group_attributes(params),
            "RegisterTargets" => self.register_targets(params),
            "DeregisterTargets" => self.deregister_targets(params),
            _ => self.describe_target_health(params),
        }
    }

    pub(crate) fn group_index(&self, params: &[(String, String)]) -> Result<usize, AwsError> {
        let arn =
            param(params, "TargetGroupArn").ok_or_else(|| AwsError::null("targetGroupArn"))?;
        if !valid_tg_arn(arn) {
            return Err(AwsError::validation(format!(
                "'{arn}' is not a valid target group ARN"
            )));
        }
        self.groups
            .iter()
            .position(|g| g.arn == arn)
            .ok_or_else(|| {
                AwsError::new(
                    400,
                    "TargetGroupNotFound",
                    format!("Target groups '{arn}' not found"),
                )
            })
    }

    pub(crate) fn describe_target_groups(
        &self,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let names = members(params, "Names.member.");
        let arns = members(params, "TargetGroupArns.member.");
        if !names.is_empty() && !arns.is_empty() {
            return Err(AwsError::validation(
                "Target group names and target group ARNs cannot be specified at the same time",
            ));
        }
        let not_found = || {
            AwsError::new(
                400,
                "TargetGroupNotFound",
                "One or more target groups not found",
            )
        };
        let mut selected: Vec<&TargetGroup> = Vec::new();
        if !names.is_empty() {
            for n in &names {
                selected.push(
                    self.groups
                        .iter()
                        .find(|g| &g.name == n)
                        .ok_or_else(not_found)?,
                );
            }
        } else if !arns.is_empty() {
            for a in &arns {
                if !valid_tg_arn(a) {
                    return Err(AwsError::validation(format!(
                        "'{a}' is not a valid target group ARN"
                    )));
                }
                selected.push(
                    self.groups
                        .iter()
                        .find(|g| &g.arn == a)
                        .ok_or_else(not_found)?,
                );
            }
        } else if let Some(lb) = param(params, "LoadBalancerArn") {
            if lb != LOAD_BALANCER_ARN {
                return Err(AwsError::new(
                    400,
                    "LoadBalancerNotFound",
                    "One or more load balancers not found",
                ));
            }
            selected = self.groups.iter().collect();
        } else {
            selected = self.groups.iter().collect();
        }
        let mut xml = String::from("\n    <TargetGroups>");
        for g in selected {
            xml.push_str(&format!(
                "
      <member>
        <TargetGroupArn>{arn}</TargetGroupArn>
        <TargetGroupName>{name}</TargetGroupName>
        <Protocol>TCP</Protocol>
        <Port>{port}</Port>
        <VpcId>{VPC_ID}</VpcId>
        <HealthCheckProtocol>TCP</HealthCheckProtocol>
        <HealthCheckPort>traffic-port</HealthCheckPort>
        <HealthCheckEnabled>true</HealthCheckEnabled>
        <HealthCheckIntervalSeconds>{interval}</HealthCheckIntervalSeconds>
        <HealthCheckTimeoutSeconds>10</HealthCheckTimeoutSeconds>
        <HealthyThresholdCount>{healthy}</HealthyThresholdCount>
        <UnhealthyThresholdCount>2</UnhealthyThresholdCount>
        <LoadBalancerArns>{lbs}</LoadBalancerArns>
        <TargetType>{target_type}</TargetType>
        <IpAddressType>{ip_type}</IpAddressType>
      </member>",
                arn = xml_escape(&g.arn),
                name = xml_escape(&g.name),
                port = g.port,
                interval = g.settings.health_check_interval_seconds,
                healthy = g.settings.healthy_threshold,
                lbs = if g.settings.attached {
                    format!("\n          <member>{LOAD_BALANCER_ARN}</member>\n        ")
                } else {
                    String::new()
                },
                target_type = xml_escape(&g.settings.target_type),
                ip_type = g.ip_address_type,
            ));
        }
        xml.push_str("\n    </TargetGroups>\n  ");
        Ok(xml)
    }

    /// The attributes AWS reports for a new NLB target group (its defaults),
    /// with the configured deregistration delay.
    pub(crate) fn describe_target_group_attributes(
        &self,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let g = &self.groups[self.group_index(params)?];
        let attrs = [
            (
                "deregistration_delay.timeout_seconds",
                g.settings.deregistration_delay_seconds.to_string(),
            ),
            (
                "deregistration_delay.connection_termination.enabled",
                "false".into(),
            ),
            ("proxy_protocol_v2.enabled", "false".into()),
            ("preserve_client_ip.enabled", "true".into()),
            ("stickiness.enabled", "false".into()),
            ("stickiness.type", "source_ip".into()),
        ];
        let mut xml = String::from("\n    <Attributes>");
        for (k, v) in attrs {
            xml.push_str(&format!(
                "\n      <member>\n        <Value>{}</Value>\n        <Key>{k}</Key>\n      </member>",
                xml_escape(&v)
            ));
        }
        xml.push_str("\n    </Attributes>\n  ");
        Ok(xml)
    }

    pub(crate) fn add_target(&mut self, gi: usize, spec: TargetSpec) {
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        let port = spec.port.unwrap_or(g.port);
        let arn = g.arn.clone();
        if let Some(t) = g
            .targets
            .iter_mut()
            .find(|t| t.id == spec.id && t.port == port)
        {
            t.sent_port = spec.port;
            t.az = spec.az;
        } else {
            g.targets.push(Target {
                registered_at: Instant::now(),
                id: spec.id.clone(),
                port,
                sent_port: spec.port,
                az: spec.az,
            });
        }
        self.draining
            .retain(|d| !(d.arn == arn && d.id == spec.id && d.port == port));
    }

    pub(crate) fn register_targets(
        &mut self,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        if specs.is_empty() {
            return Err(AwsError::null("targets"));
        }
        // An ip target group takes addresses of its IpAddressType only.
        let ipv6 = self.groups[gi].ip_address_type == "ipv6";
        let fits = |id: &str| match id.parse::<IpAddr>() {
            Ok(ip) => ip.is_ipv6() == ipv6,
            Err(_) => false,
        };
        if let Some(s) = specs.iter().find(|s| !fits(&s.id)) {
            return Err(AwsError::validation(format!(
                "The IP address '{}' is not a valid {} address",
                s.id,
                if ipv6 { "IPv6" } else { "IPv4" }
            )));
        }
        for s in specs {
            self.add_target(gi, s);
        }
        Ok(String::new())
    }

    /// Holds a RegisterTargets back ([`crate::Fault::LandAfterDeregister`]);
    /// false when it names no valid group and targets (it is then dropped).
    pub(crate) fn hold_registration(
        &mut self,
        params: &[(String, String)],
        delay: Duration,
    ) -> bool {
        let (Ok(gi), Ok(specs)) = (self.group_index(params), parse_targets(params)) else {
            return false;
        };
        self.late_registrations.push(LateRegistration {
            arn: self.groups[gi].arn.clone(),
            ids: specs.into_iter().map(|s| s.id).collect(),
            params: params.to_vec(),
            delay,
            due: None,
        });
        true
    }

    /// Applies the held-back registrations due at `now`.
    pub(crate) fn land_late_registrations(&mut self, now: Instant) {
        if self.late_registrations.is_empty() {
            return;
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late_registrations)
            .into_iter()
            .partition(|l| l.due.is_some_and(|at| at <= now));
        self.late_registrations = later;
        for l in due {
            let _ = self.register_targets(&l.params);
        }
    }

    pub(crate) fn deregister_targets(
        &mut self,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        if specs.is_empty() {
            return Err(AwsError::null("targets"));
        }
        let (arn, gport) = (self.groups[gi].arn.clone(), self.groups[gi].port);
        // A held-back registration of one of these targets lands a moment
        // after this deregistration, whatever its answer.
        let now = Instant::now();
        for late in &mut self.late_registrations {
            if late.due.is_none()
                && late.arn == arn
                && specs.iter().any(|s| late.ids.contains(&s.id))
            {
                late.due = Some(now + late.delay);
            }
        }
        // Real AWS answers success when an ip target that is not registered is
        // deregistered; moto answers 400 InvalidTarget (set_strict_deregister).
        if self.strict_deregister {
            let missing: Vec<String> = specs
                .iter()
                .filter(|s| {
                    let p = s.port.unwrap_or(gport);
                    !self.groups[gi]
                        .targets
                        .iter()
                        .any(|t| t.id == s.id && t.port == p)
                })
                .map(|s| format!("'{}:{}'", s.id, s.port.unwrap_or(gport)))
                .collect();
            if !missing.is_empty() {
                return Err(AwsError::new(
                    400,
                    "InvalidTarget",
                    format!(
                        "The following targets are not registered in target group '{arn}': {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        for s in specs {
            let p = s.port.unwrap_or(gport);
            let targets = &mut self.groups[gi].targets;
            if let Some(pos) = targets.iter().position(|t| t.id == s.id && t.port == p) {
                let t = targets.remove(pos);
                if self.draining_polls > 0 {
                    self.draining.push(Draining {
                        arn: arn.clone(),
                        id: t.id,
                        port: t.port,
                        az: t.az,
                        remaining: self.draining_polls,
                    });
                }
            }
        }
        Ok(String::new())
    }

    /// Each member starts with an `AdministrativeOverride` block (as AWS sends
    /// since zonal shift) whose `<State>no_override</State>` comes before the
    /// `TargetHealth` one: a parser must not take the first `<State>`.
    pub(crate) fn describe_target_health(
        &mut self,
        params: &[(String, String)],
    ) -> Result<String, AwsError> {
        let gi = self.group_index(params)?;
        let specs = parse_targets(params)?;
        let (arn, gport) = (self.groups[gi].arn.clone(), self.groups[gi].port);
        let mut entries: Vec<(String, u16, Option<String>)> = Vec::new();
        if specs.is_empty() {
            for t in &self.groups[gi].targets {
                entries.push((t.id.clone(), t.port, t.az.clone()));
            }
            for d in self.draining.iter().filter(|d| d.arn == arn) {
                entries.push((d.id.clone(), d.port, d.az.clone()));
            }
        } else {
            for s in &specs {
                match s.port {
                    Some(p) => entries.push((s.id.clone(), p, s.az.clone())),
                    None => {
                        let before = entries.len();
                        for t in self.groups[gi].targets.iter().filter(|t| t.id == s.id) {
                            entries.push((t.id.clone(), t.port, t.az.clone()));
                        }
                        for d in self
                            .draining
                            .iter()
                            .filter(|d| d.arn == arn && d.id == s.id)
                        {
                            entries.push((d.id.clone(), d.port, d.az.clone()));
                        }
                        if entries.len() == before {
                            entries.push((s.id.clone(), gport, s.az.clone()));
                        }
                    }
                }
            }
        }
        let mut xml = String::from("\n    <TargetHealthDescriptions>");
        for (id, port, az) in entries {
            let (state, reason, az) = self.health_of(gi, &id, port, az);
            let az = az
                .map(|az| {
                    format!(
                        "\n          <AvailabilityZone>{}</AvailabilityZone>",
                        xml_escape(&az)
                    )
                })
                .unwrap_or_default();
            let reason = reason
                .map(|r| {
                    format!(
                        "\n          <Reason>{}</Reason>\n          <Description>{}</Description>",
                        xml_escape(&r),
                        xml_escape(&reason_description(&r))
                    )
                })
                .unwrap_or_default();
            xml.push_str(&format!(
                "
      <member>
        <AdministrativeOverride>
          <State>no_override</State>
          <Reason>AdministrativeOverride.NoOverride</Reason>
          <Description>No override is currently active on target</Description>
        </AdministrativeOverride>
        <HealthCheckPort>{port}</HealthCheckPort>
        <Target>
          <Id>{id}</Id>
          <Port>{port}</Port>{az}
        </Target>
        <TargetHealth>
          <State>{state}</State>{reason}
        </TargetHealth>
      </member>",
                id = xml_escape(&id),
                state = xml_escape(&state),
            ));
        }
        xml.push_str("\n    </TargetHealthDescriptions>\n  ");
        Ok(xml)
    }

    /// (state, reason, availability zone) of one target for one DescribeTargetHealth call.
    pub(crate) fn health_of(
        &mut self,
        gi: usize,
        id: &str,
        port: u16,
        az: Option<String>,
    ) -> (String, Option<String>, Option<String>) {
        let arn = self.groups[gi].arn.clone();
        if let Some(pos) = self
            .draining
            .iter()
            .position(|d| d.arn == arn && d.id == id && d.port == port)
        {
            let d = &mut self.draining[pos];
            let az = d.az.clone().or(az);
            d.remaining = d.remaining.saturating_sub(1);
            if d.remaining == 0 {
                self.draining.remove(pos);
            }
            return (
                "draining".into(),
                Some("Target.DeregistrationInProgress".into()),
                az,
            );
        }
        if let Some(t) = self.groups[gi]
            .targets
            .iter()
            .find(|t| t.id == id && t.port == port)
        {
            let az = t.az.clone().or(az);
            // AWS: registered, but no load balancer uses the group.
            if !self.groups[gi].settings.attached {
                return ("unused".into(), Some("Target.NotInUse".into()), az);
            }
            if let Some(seq) = self.health.get_mut(&(arn, id.to_string())) {
                if !seq.states.is_empty() {
                    let i = seq.next.min(seq.states.len() - 1);
                    seq.next = seq.next.saturating_add(1);
                    let (s, r) = seq.states[i].clone();
                    return (s, r, az);
                }
            }
            if let Some(after) = self.healthy_after {
                if t.registered_at.elapsed() < after {
                    return (
                        "initial".into(),
                        Some("Elb.RegistrationInProgress".into()),
                        az,
                    );
                }
            }
            return ("healthy".into(), None, az);
        }
        ("unused".into(), Some("Target.NotRegistered".into()), az)
    }
}

/// Values of `PREFIXn` parameters, ordered by n.
fn members(params: &[(String, String)], prefix: &str) -> Vec<String> {
    let mut found: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.parse::<u32>().ok()?;
            Some((n, v.clone()))
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, v)| v).collect()
}

fn parse_targets(params: &[(String, String)]) -> Result<Vec<TargetSpec>, AwsError> {
    type Fields = (Option<String>, Option<String>, Option<String>);
    let mut by_n: BTreeMap<u32, Fields> = BTreeMap::new();
    for (k, v) in params {
        let Some(rest) = k.strip_prefix("Targets.member.") else {
            continue;
        };
        let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
        let n = match n.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(AwsError::validation(format!(
                    "Invalid parameter name '{k}'"
                )))
            }
        };
        let e = by_n.entry(n).or_default();
        match field {
            "Id" => e.0 = Some(v.clone()),
            "Port" => e.1 = Some(v.clone()),
            "AvailabilityZone" => e.2 = Some(v.clone()),
            _ => return Err(AwsError::validation(format!("Unknown parameter '{k}'"))),
        }
    }
    let mut out = Vec::new();
    for (n, (id, port, az)) in by_n {
        let id = id.ok_or_else(|| AwsError::null(&format!("targets.{n}.member.id")))?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p >= 1 => Some(p),
                _ => {
                    return Err(AwsError::validation(format!(
                        "1 validation error detected: Value '{p}' at 'targets.{n}.member.port' failed to satisfy constraint: Member must have value greater than or equal to 1 and less than or equal to 65535"
                    )))
                }
            },
        };
        out.push(TargetSpec { id, port, az });
    }
    Ok(out)
}

/// `arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID16HEX`.
fn valid_tg_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws:elasticloadbalancing:") else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let (Some(region), Some(account), Some(resource)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((name, id)) = resource
        .strip_prefix("targetgroup/")
        .and_then(|r| r.split_once('/'))
    else {
        return false;
    };
    !region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 32
        && id.len() == 16
        && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn reason_description(reason: &str) -> String {
    match reason {
        "Elb.RegistrationInProgress" => "Target registration is in progress",
        "Elb.InitialHealthChecking" => "Initial health checks in progress",
        "Elb.InternalError" => "Health checks failed due to an internal error",
        "Target.ResponseCodeMismatch" => "Health checks failed with these codes: [502]",
        "Target.Timeout" => "Request timed out",
        "Target.FailedHealthChecks" => "Health checks failed",
        "Target.NotRegistered" => "Target is not registered to the target group",
        "Target.NotInUse" => {
            "Target group is not configured to receive traffic from the load balancer"
        }
        "Target.DeregistrationInProgress" => "Target deregistration is in progress",
        "Target.InvalidState" => "Target is in the stopped or terminated state",
        "Target.IpUnusable" => "The target IP address is reserved for use by a load balancer",
        "Target.HealthCheckDisabled" => "Health checks are disabled",
        other => return format!("Fake description of {other}"),
    }
    .to_string()
}
