#!/usr/bin/env python3
"""Set up (and inspect) a local moto_server for k8s-nlb-registrator-sidecar.

The one moto set-up of the repository: scripts/quickstart, scripts/bench and
tests/moto.rs create their VPC, load balancer and target groups with it.

Only talks to the --endpoint given (a local moto_server); never to real AWS.
Every mode prints one JSON document on stdout; errors go to stderr with exit 1
(2 for bad usage). Note: GET /moto-api/ does not use up moto's free calls, other
requests (even GET /) do: probe readiness with /moto-api/.

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
import json
import os
import sys
import time

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


def create_resources(env, lb_name, target_groups, alb=False, health_check_path="/"):
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
    p.add_argument("--endpoint", required=True, help="moto_server URL, e.g. http://127.0.0.1:5000")
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

    if not args.endpoint.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        p.error(f"refusing a non-local endpoint: {args.endpoint}")
    modes = [
        bool(args.iam_user or args.target_group),
        bool(args.health),
        bool(args.answer_time),
        args.exhaust_free_calls,
    ]
    if sum(modes) != 1:
        p.error(
            "give --target-group/--iam-user (setup), or --health ARN, or --answer-time ARN, "
            "or --exhaust-free-calls"
        )

    env = Env(args)
    try:
        if args.health:
            out = target_health(env, args.health)
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
                        env, lb_name, args.target_group, args.alb, args.health_check_path
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
