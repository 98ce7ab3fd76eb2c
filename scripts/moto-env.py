#!/usr/bin/env python3
"""Set up (and inspect) a local moto_server for k8s-nlb-registrator-sidecar.

The one moto set-up of the repository: scripts/quickstart, scripts/bench and
tests/it/moto.rs create their VPC, load balancer and target groups with it.

Only talks to the --endpoint given (a local moto_server); never to real AWS.
Every mode but --get prints one JSON document on stdout; errors go to stderr
with exit 1 (2 for bad usage). Note: GET /moto-api/ does not use up moto's free
calls, other requests (even GET /) do: probe readiness with /moto-api/ (--ready).

Modes:
  resources (default): a VPC, two subnets, a network load balancer and one IP
      target group (TCP) per --target-group NAME:PORT, each with a TCP listener.
      Prints {"vpc_id", "subnet_ids", "load_balancer_arn", "load_balancer_type",
      "target_groups": {NAME: {"arn", "port", "listener_arn"}}, "calls"}.
      With --alb: an application load balancer (with a security group) instead,
      and each IP target group is HTTP (health check GET --health-check-path,
      matcher 200) with an HTTP listener on PORT.
  --iam-user NAME: an IAM user with an attached managed policy allowing
      elasticloadbalancing:* (or the actions of --iam-actions A,B,...) and an
      access key. Prints {"user", "policy_arn", "access_key_id",
      "secret_access_key", "calls"}. For moto's signature checking mode
      (INITIAL_NO_AUTH_ACTION_COUNT=N: the first N API calls are not checked,
      later ones are verified: SigV4 signature, then the IAM policies).
  --health ARN [ARN...]: DescribeTargetHealth of the target group(s), as one
      JSON list of {"target_group_arn", "id", "port", "availability_zone",
      "state", "reason"} (empty when no targets are registered).
      With --expect registered --expect-target ID:PORT: also checks that the
      groups hold exactly that target, healthy, on PORT; with --expect gone,
      that they hold no target at all. The list is printed either way; a
      mismatch prints "expected ..., moto has ..." on stderr and exits 3
      (used by scripts/quickstart).
  --ready: one GET /moto-api/ (1 s timeout), which does not count as an API
      call: exit 0 and {"ready": true} once moto_server answers, exit 1
      before (used by scripts/quickstart to wait for moto_server).
  --get FILE [KEY...]: the value at that path of the JSON document in FILE
      (keys of objects; list indexes as numbers): a string as it is,
      anything else as JSON. Needs no --endpoint and sends nothing (used
      by scripts/bench to read this script's output).
  --answer-time ARN: moto's own answer time: one DescribeTargetHealth of the
      target group to warm the client and its kept-alive connection, then 21
      timed ones. Prints {"median_ms"} (used by scripts/bench).
  --exhaust-free-calls: in signature checking mode, spend what is left of
      moto's free (unchecked) calls with a deliberately wrong secret, until
      moto answers with an authentication error; afterwards every call is
      verified. Prints {"burned", "code"}: code is SignatureDoesNotMatch when
      --access-key-id is a key moto knows, InvalidClientTokenId otherwise.

--iam-user and the resources can be combined in one run (the user first).
"calls" counts the API requests this run sent (for INITIAL_NO_AUTH_ACTION_COUNT).

Credentials: --access-key-id/--secret-access-key, default $AWS_ACCESS_KEY_ID /
$AWS_SECRET_ACCESS_KEY, then "test"/"test".
"""

import argparse
import http.client
import json
import os
import sys
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

AUTH_ERROR_CODES = ("SignatureDoesNotMatch", "InvalidClientTokenId", "AuthFailure")


class Env:
    def __init__(self, args):
        self.endpoint = args.endpoint
        self.region = args.region
        self.key_id = args.access_key_id
        self.secret = args.secret_access_key
        self.calls = 0
        # No retries: against a local server a failure is a real failure, and
        # retries would make the request count (for moto's free calls) unpredictable.
        self.config = botocore.config.Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )

    def client(self, service, secret=None):
        c = boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=secret if secret is not None else self.secret,
            config=self.config,
        )
        c.meta.events.register("before-send", self._count)
        return c

    def _count(self, **_kwargs):
        self.calls += 1


def parse_target_group(spec):
    name, sep, port = spec.rpartition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected NAME:PORT, got {spec!r}")
    return name, int(port)


def parse_target(spec):
    target, sep, port = spec.rpartition(":")
    if not sep or not target or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected ID:PORT, got {spec!r}")
    return target, int(port)


def create_iam_user(env, user, actions):
    iam = env.client("iam")
    iam.create_user(UserName=user)
    policy = iam.create_policy(
        PolicyName=f"{user}-elbv2",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": actions,
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    policy_arn = policy["Policy"]["Arn"]
    iam.attach_user_policy(UserName=user, PolicyArn=policy_arn)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {
        "user": user,
        "policy_arn": policy_arn,
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
    }


def create_resources(env, lb_name, target_groups, alb=False, health_check_path="/", attributes=()):
    ec2 = env.client("ec2")
    elbv2 = env.client("elbv2")
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{env.region}{zone}"
        )["Subnet"]["SubnetId"]
        for cidr, zone in (("10.0.1.0/24", "a"), ("10.0.2.0/24", "b"))
    ]
    lb_args = {"Name": lb_name, "Subnets": subnet_ids, "Scheme": "internal"}
    if alb:
        # An ALB takes security groups (an NLB may too, but needs none).
        sg_id = ec2.create_security_group(
            GroupName=f"{lb_name}-sg", Description="ALB", VpcId=vpc_id
        )["GroupId"]
        lb_args.update(Type="application", SecurityGroups=[sg_id])
    else:
        lb_args.update(Type="network")
    lb = elbv2.create_load_balancer(**lb_args)["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    protocol = "HTTP" if alb else "TCP"
    groups = {}
    for name, port in target_groups:
        tg_args = {
            "Name": name,
            "Protocol": protocol,
            "Port": port,
            "VpcId": vpc_id,
            "TargetType": "ip",
            "HealthCheckProtocol": protocol,
        }
        if alb:
            tg_args.update(HealthCheckPath=health_check_path, Matcher={"HttpCode": "200"})
        tg = elbv2.create_target_group(**tg_args)["TargetGroups"][0]
        if attributes:
            elbv2.modify_target_group_attributes(
                TargetGroupArn=tg["TargetGroupArn"],
                Attributes=[dict(zip(("Key", "Value"), a.split("=", 1))) for a in attributes],
            )
        listener = elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )["Listeners"][0]
        groups[name] = {
            "arn": tg["TargetGroupArn"],
            "port": port,
            "listener_arn": listener["ListenerArn"],
        }
    return {
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "load_balancer_arn": lb_arn,
        "load_balancer_type": lb.get("Type", "application" if alb else "network"),
        "target_groups": groups,
    }


def target_health(env, arns):
    elbv2 = env.client("elbv2")
    out = []
    for arn in arns:
        resp = elbv2.describe_target_health(TargetGroupArn=arn)
        out.extend(
            {
                "target_group_arn": arn,
                "id": d["Target"]["Id"],
                "port": d["Target"].get("Port"),
                "availability_zone": d["Target"].get("AvailabilityZone"),
                "state": d.get("TargetHealth", {}).get("State"),
                "reason": d.get("TargetHealth", {}).get("Reason"),
            }
            for d in resp["TargetHealthDescriptions"]
        )
    return out


def check_targets(health, expect, target):
    """None when the DescribeTargetHealth list matches --expect, else why not."""
    got = [(d["id"], d["port"], d["state"]) for d in health]
    want = [(target[0], target[1], "healthy")] if expect == "registered" else []
    if got != want:
        return f"expected {want or 'no targets'}, moto has {got or 'no targets'}"
    return None


def ready(endpoint):
    """True once moto_server answers GET /moto-api/ (not an API call)."""
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/moto-api/", timeout=1):
            return True
    except (OSError, http.client.HTTPException):
        return False


def json_get(path, keys):
    """The value at KEYS of the JSON document in PATH (list indexes as numbers)."""
    with open(path, encoding="utf-8") as f:
        value = json.load(f)
    for key in keys:
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def answer_time(env, arn, calls=21):
    """Median milliseconds of DescribeTargetHealth from a warm client."""
    elbv2 = env.client("elbv2")
    elbv2.describe_target_health(TargetGroupArn=arn)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        elbv2.describe_target_health(TargetGroupArn=arn)
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(sorted(times)[calls // 2], 2)}


def exhaust_free_calls(env, limit=200):
    """Send calls signed with a wrong secret until moto starts verifying them."""
    elbv2 = env.client("elbv2", secret="wrong-secret-to-burn-free-calls")
    for burned in range(limit):
        try:
            elbv2.describe_target_groups()
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in AUTH_ERROR_CODES:
                return {"burned": burned, "code": code}
            raise
    raise SystemExit(
        f"moto still accepts a wrong secret after {limit} calls: "
        "is INITIAL_NO_AUTH_ACTION_COUNT set?"
    )


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--endpoint", help="moto_server URL, e.g. http://127.0.0.1:5000 (every mode but --get)"
    )
    p.add_argument("--region", default=os.environ.get("AWS_REGION") or "us-east-1")
    p.add_argument("--access-key-id", default=os.environ.get("AWS_ACCESS_KEY_ID") or "test")
    p.add_argument(
        "--secret-access-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test"
    )
    p.add_argument(
        "--target-group",
        metavar="NAME:PORT",
        action="append",
        default=[],
        type=parse_target_group,
        help="IP target group (TCP) to create, with a TCP listener on PORT; repeatable",
    )
    p.add_argument(
        "--lb-name",
        help="name of the load balancer (default: sidecar-nlb, with --alb sidecar-alb)",
    )
    p.add_argument(
        "--alb",
        action="store_true",
        help="an application load balancer with HTTP target groups and HTTP listeners "
        "instead of the network load balancer with TCP ones",
    )
    p.add_argument(
        "--health-check-path",
        default="/",
        help="with --alb: the HTTP health check path of the target groups (default: %(default)s)",
    )
    p.add_argument(
        "--target-group-attribute",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="set this attribute on every --target-group created; repeatable",
    )
    p.add_argument("--iam-user", metavar="NAME", help="create an IAM user, policy and access key")
    p.add_argument(
        "--iam-actions",
        default="elasticloadbalancing:*",
        help="comma-separated actions the --iam-user policy allows (default: %(default)s)",
    )
    p.add_argument(
        "--health",
        metavar="ARN",
        nargs="+",
        help="print DescribeTargetHealth of one or more target groups",
    )
    p.add_argument(
        "--expect",
        choices=("registered", "gone"),
        help="with --health: exit 3 unless the groups hold exactly --expect-target, "
        "healthy (registered), or no target (gone)",
    )
    p.add_argument(
        "--expect-target",
        metavar="ID:PORT",
        type=parse_target,
        help="with --expect registered: the one target the groups must hold",
    )
    p.add_argument(
        "--ready",
        action="store_true",
        help="exit 0 when moto_server answers GET /moto-api/ (1 s timeout), else 1",
    )
    p.add_argument(
        "--get",
        metavar=("FILE", "KEY"),
        nargs="+",
        help="print the value at KEY... of the JSON file FILE (no --endpoint needed)",
    )
    p.add_argument(
        "--answer-time",
        metavar="ARN",
        help="median time moto takes to answer DescribeTargetHealth of ARN",
    )
    p.add_argument(
        "--exhaust-free-calls",
        action="store_true",
        help="spend moto's remaining INITIAL_NO_AUTH_ACTION_COUNT calls",
    )
    args = p.parse_args()

    modes = [
        bool(args.iam_user or args.target_group),
        bool(args.health),
        bool(args.answer_time),
        args.exhaust_free_calls,
        args.ready,
        bool(args.get),
    ]
    if sum(modes) != 1:
        p.error(
            "give --target-group/--iam-user (setup), or --health ARN, or --answer-time ARN, "
            "or --exhaust-free-calls, or --ready, or --get FILE [KEY...]"
        )
    if args.expect and not args.health:
        p.error("--expect goes with --health")
    if args.expect == "registered" and not args.expect_target:
        p.error("--expect registered needs --expect-target ID:PORT")

    if args.get:
        try:
            value = json_get(args.get[0], args.get[1:])
        except (OSError, ValueError, LookupError, TypeError) as e:
            what = f"{type(e).__name__}: {e}"
            print(f"moto-env.py: --get {' '.join(args.get)}: {what}", file=sys.stderr)
            return 1
        print(value if isinstance(value, str) else json.dumps(value))
        return 0

    if not args.endpoint:
        p.error("--endpoint is required")
    if not args.endpoint.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        p.error(f"refusing a non-local endpoint: {args.endpoint}")
    if args.ready:
        if not ready(args.endpoint):
            print(f"moto-env.py: no answer from {args.endpoint}/moto-api/", file=sys.stderr)
            return 1
        print(json.dumps({"ready": True}))
        return 0

    env = Env(args)
    mismatch = None
    try:
        if args.health:
            out = target_health(env, args.health)
            if args.expect:
                mismatch = check_targets(out, args.expect, args.expect_target)
        elif args.answer_time:
            out = answer_time(env, args.answer_time)
        elif args.exhaust_free_calls:
            out = exhaust_free_calls(env)
        else:
            out = {}
            if args.iam_user:
                out.update(create_iam_user(env, args.iam_user, args.iam_actions.split(",")))
            if args.target_group:
                lb_name = args.lb_name or ("sidecar-alb" if args.alb else "sidecar-nlb")
                out.update(
                    create_resources(
                        env,
                        lb_name,
                        args.target_group,
                        args.alb,
                        args.health_check_path,
                        args.target_group_attribute,
                    )
                )
            out["calls"] = env.calls
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        print(
            f"moto-env.py: {e.operation_name} failed: {err.get('Code')}: {err.get('Message')}",
            file=sys.stderr,
        )
        return 1
    except botocore.exceptions.BotoCoreError as e:
        print(f"moto-env.py: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    print()
    if mismatch:
        sys.stdout.flush()
        print(mismatch, file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
