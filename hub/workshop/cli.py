"""`openledger-workshop`: run a class on the hub.

    openledger-workshop create ml101 --csv students.csv --instructor prof
    openledger-workshop create ml101 --count 30 --prefix ml101-
    openledger-workshop distribute ml101
    openledger-workshop dry-run ml101 templates/notebooks/00-welcome.ipynb
    openledger-workshop progress ml101
    openledger-workshop password ml101-07     # a student lost their password: a new one, shown once
    openledger-workshop vote ml101 "Raise the contributors' share" --set owner_percent=45 \
        --set contributors_percent=45 --set protocol_percent=10     # a class vote, fund to execute
    openledger-workshop cleanup ml101

Talks to the hub's REST API with the `openledger-admin` service token from the data dir (or --token /
OPENLEDGER_ADMIN_TOKEN). Students join the `students` group, which the `instructors` group may manage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hub.hub_config import PASSWORD_LOGINS
from hub.secrets import ensure_secrets
from hub.settings import SettingsError, load_settings
from hub.workshop.class_vote import class_vote
from hub.workshop.hub_api import HubAPI, HubAPIError
from hub.workshop.progress import class_progress, format_table
from hub.workshop.roster import RosterError
from hub.workshop.runner import dry_run
from hub.workshop.steps import (
    TEMPLATES_DIR,
    check_roster,
    cleanup,
    create,
    distribute,
    fund,
    issue_passwords,
    settle_now,
    students,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openledger-workshop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hub-url", help="default: the settings' public URL")
    parser.add_argument("--token", help="admin token; default: $OPENLEDGER_ADMIN_TOKEN or the data dir's")
    sub = parser.add_subparsers(dest="command", required=True)
    create_cmd = sub.add_parser("create", help="create the class's users and groups")
    create_cmd.add_argument("workshop")
    source = create_cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="CSV with a username column, or one name per line")
    source.add_argument("--count", type=int, help="generate this many names")
    create_cmd.add_argument("--prefix", default="student", help="prefix of generated names")
    create_cmd.add_argument("--instructor", action="append", default=[], help="instructor user (repeatable)")
    for command, help_text in (
        ("distribute", "copy the template notebooks into every student's home"),
        ("progress", "show who has a server, a trained model, inferences"),
        ("cleanup", "stop servers, delete the class's users and group, archive their homes"),
    ):
        cmd = sub.add_parser(command, help=help_text)
        cmd.add_argument("workshop")
        if command == "progress":
            cmd.add_argument("--json", action="store_true")
    fund_cmd = sub.add_parser("fund", help="OPEN (and gas) for every student: inferences and class training")
    fund_cmd.add_argument("workshop")
    fund_cmd.add_argument("--open", default="10", help="OPEN per student (default 10)")
    password_cmd = sub.add_parser("password", help="issue a new login password for one user (shown once)")
    password_cmd.add_argument("user")
    sub.add_parser("settle", help="settle the rewards epoch now, so students can verify and claim")
    vote_cmd = sub.add_parser("vote", help="run a class vote on a parameter change: fund, delegate, propose, vote, "
                              "queue, execute (each student votes with their own wallet)")  # fmt: skip
    vote_cmd.add_argument("workshop")
    vote_cmd.add_argument("description")
    vote_cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a change (repeatable)")
    vote_cmd.add_argument("--wrap", default="10", help="OPEN each student wraps into votes (default 10)")
    vote_cmd.add_argument("--against", default="", help="comma list of students who vote against")
    run_cmd = sub.add_parser("dry-run", help="run a template notebook as every student with papermill")
    run_cmd.add_argument("workshop")
    run_cmd.add_argument("notebook", type=Path)
    run_cmd.add_argument("--out", type=Path, default=Path("workshop-dry-run"))
    run_cmd.add_argument("--kernel", default="openledger-python")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        token = (
            args.token or os.environ.get("OPENLEDGER_ADMIN_TOKEN") or ensure_secrets(settings.data_dir).admin_api_token
        )
        reserved = set(settings.hub.admin_users)
        with HubAPI(args.hub_url or settings.public_url, token) as api:
            if args.command == "create":
                check = check_roster(
                    api, args.workshop, args.csv, args.count, args.prefix, args.instructor, reserved=reserved
                )
                if check.roster is None:
                    raise RosterError(list(check.problems))
                created = create(api, args.workshop, check.roster, args.instructor)
                print(f"workshop {args.workshop}: {len(check.roster.names)} students ({len(created)} new accounts)")
                if settings.hub.authenticator in PASSWORD_LOGINS:
                    print("login passwords (shown once; `password NAME` issues a new one):")
                    for user, password in issue_passwords(api, created, settings).items():
                        print(f"{user}\t{password}")
            elif args.command == "password":
                print(f"{args.user}\t{api.issue_password(args.user)}")
            elif args.command == "distribute":
                users = students(api, args.workshop)
                copied = distribute(settings, TEMPLATES_DIR, users)
                if copied is None:
                    print("each student's server copies the course notebooks into their home when it first starts")
                else:
                    print(f"copied {sum(map(len, copied.values()))} files into {len(users)} homes")
            elif args.command == "dry-run":
                users = students(api, args.workshop)
                results = dry_run(api, users, args.notebook, args.out, kernel=args.kernel)
                for user, error in results.items():
                    print(f"{user}\t{'ok' if error is None else 'FAILED: ' + error}")
                return 0 if all(error is None for error in results.values()) else 1
            elif args.command == "progress":
                users = students(api, args.workshop)
                rows = class_progress(api, users, token)
                print(json.dumps(rows, indent=2) if args.json else format_table(rows))
            elif args.command == "fund":
                funded = fund(api, students(api, args.workshop), args.open, workshop=args.workshop)
                for user, status in funded.items():
                    print(f"{user}\t{status}")
                return 0 if all(status == "ok" for status in funded.values()) else 1
            elif args.command == "vote":
                changes = dict(item.split("=", 1) for item in args.set if "=" in item)
                if len(changes) != len(args.set):
                    raise HubAPIError(f"--set takes KEY=VALUE, got {args.set}")
                against = frozenset(name for name in args.against.split(",") if name)
                result = class_vote(api, students(api, args.workshop), changes, args.description,
                                    wrap=args.wrap, against=against)  # fmt: skip
                for user, reason in result.refused.items():
                    print(f"{user}\tvote refused: {reason}")
                return 0 if result.proposal.get("state") == "executed" else 1
            elif args.command == "settle":
                report = settle_now(api)
                print(f"epoch {report.get('epoch')}: {report.get('status')}")
            elif args.command == "cleanup":
                report = cleanup(api, args.workshop, settings)
                print(f"workshop {args.workshop}: removed {len(report.users)} users")
                if report.archived_to is not None:
                    print(f"their homes were moved to {report.archived_to}")
    except RosterError as err:
        print(f"openledger-workshop: nothing was created:\n{err}", file=sys.stderr)
        return 2
    except (SettingsError, HubAPIError) as err:
        print(f"openledger-workshop: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
