"""The escape suite: a workshop student tries, from their own kernel, to take what is not theirs.

Each attack is a snippet run in the student's OpenLedger kernel through the hub's kernels API (as the student
would: their token, their server) on a real multi-user hub started as root. A snippet prints one line
`ESCAPE {"succeeded": …, "detail": …}`; the harness (root) first checks that every target exists, so an attack
cannot pass because it aimed at nothing. Results go to bench/results/security.json (`escape_attempts`,
`escape_succeeded` — must be 0), merged with what the API fuzzer writes there.

    python -m bench.escape_suite          # needs root: creates OS accounts, a service account and cgroups
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.hub_bench import command_line, running_hub
from gpu_spawner.accounts import processes_of
from tests.hub_harness import RunningHub, run_in_kernel

RESULTS = Path(__file__).parent / "results" / "security.json"
ATTACKER, VICTIM = "eve", "victim"
# Small enough that the memory attack is quick on a 2-core CI machine, large enough for a server and a kernel.
ESCAPE_HUB = {"spawner": {"mem_limit": "1G", "max_processes": 96}}

PRELUDE = """
import json, os, socket, subprocess
def report(succeeded, detail=""):
    print("ESCAPE " + json.dumps({"succeeded": bool(succeeded), "detail": str(detail)[:300]}))
def can_read(path):
    try:
        with open(path, "rb") as handle:
            handle.read(1)
        return True
    except OSError:
        return False
def can_write(path):
    try:
        with open(path, "ab"):
            pass
        return True
    except OSError:
        return False
"""


@dataclass(frozen=True)
class Attack:
    name: str
    code: str  # runs after PRELUDE; must call report() once


def _paths_attack(name: str, paths: list[Path], mode: str = "read") -> Attack:
    check = "can_read" if mode == "read" else "can_write"
    listed = json.dumps([str(path) for path in paths])
    code = f"hits = [p for p in {listed} if {check}(p)]\nreport(hits, hits or 'all {len(paths)} refused')"
    return Attack(name, code)


KEY_SECRETS = (
    "hub/secrets/admin_api_token",
    "hub/secrets/admin_password",
    "hub/secrets/proxy_auth_token",
    "hub/secrets/jupyterhub_cookie_secret",
    "hub/secrets/user_password",
    "secrets/wallet.key",
    "secrets/relay-operator.key",
    "chain/31337/deployer.key",
)


def _secret_files(data_dir: Path) -> list[Path]:
    """Every file in the two secret folders, plus the deployer key; the ones that matter most must be there."""
    files = [path for folder in ("hub/secrets", "secrets") for path in sorted((data_dir / folder).glob("*"))]
    files += sorted((data_dir / "chain").glob("*/deployer.key"))
    missing = [name for name in KEY_SECRETS if data_dir / name not in files]
    assert not missing, f"secret files missing (the attack would prove nothing): {missing}"
    return files


def _blobs(data_dir: Path, wait_s: float = 90) -> list[Path]:
    """A few blob files (the demo datanet's snapshot is written shortly after the first start)."""
    deadline = time.monotonic() + wait_s
    while True:
        blobs = [path for path in sorted((data_dir / "blobs").rglob("*")) if path.is_file()][:5]
        if blobs or time.monotonic() > deadline:
            return blobs
        time.sleep(1)


def build_attacks(hub: RunningHub, victim_pid: int) -> list[Attack]:
    """The attacks, with real targets taken from the running hub (asserted to exist)."""
    data = hub.settings.data_dir
    secrets = _secret_files(data)
    databases = [data / "openledger.sqlite", data / "hub" / "jupyterhub.sqlite"]
    blobs = _blobs(data)
    chain = [data / "chain" / "anvil-state.json", data / "chain" / "31337" / "deployments.json"]
    victim_home = hub.home(VICTIM)
    victim_files = [victim_home / "00-welcome.ipynb", victim_home / "secret-notes.txt"]
    repo = Path(__file__).resolve().parent.parent
    venv_file = Path(httpx.__file__)
    targets = [*secrets, *databases, *blobs, *chain, *victim_files, venv_file]
    missing = [str(path) for path in targets if not path.exists()]
    assert not missing, f"escape targets missing (the suite would prove nothing): {missing}"
    assert blobs, "no blob in the store yet"
    ipc = data / "chain" / "anvil.ipc"
    settings = hub.settings
    demo_password = hub.secrets.user_password
    return [
        _paths_attack("read the hub's and the services' secret files", secrets),
        _paths_attack("read the platform and hub databases", databases),
        _paths_attack("read the blob store", blobs),
        _paths_attack("read the chain state and deployments", chain),
        _paths_attack("read another student's home", victim_files),
        _paths_attack("write into the repository and the venv", [repo / "hub" / "settings.py", venv_file], "write"),
        _paths_attack("write into the system's account files", [Path("/etc/passwd"), Path("/etc/shadow")], "write"),
        _paths_attack("read /etc/shadow", [Path("/etc/shadow")]),
        Attack(
            "list the data dir and another home",
            f"found = []\nfor d in {json.dumps([str(data), str(victim_home), str(data / 'hub')])}:\n"
            "    try:\n        found += os.listdir(d)\n    except OSError:\n        pass\n"
            "report(found, found or 'every listing refused')",
        ),
        Attack(
            "read another server's environment, memory and command line",
            f"pid = {victim_pid}\nleaks = []\n"
            "for part in ('environ', 'mem', 'stack'):\n"
            "    if can_read(f'/proc/{pid}/{part}'):\n        leaks.append(part)\n"
            "cmd = open(f'/proc/{pid}/cmdline', 'rb').read().decode(errors='replace')\n"
            "if 'TOKEN' in cmd.upper():\n    leaks.append('token in cmdline')\n"
            "report(leaks, leaks or 'environ/mem/stack refused; no token in cmdline')",
        ),
        Attack(
            "find a token in any process's environment or command line",
            textwrap.dedent(
                """
                found = []
                for pid in filter(str.isdigit, os.listdir('/proc')):
                    for part in ('environ', 'cmdline'):
                        try:
                            text = open(f'/proc/{pid}/{part}', 'rb').read().decode(errors='replace')
                        except OSError:
                            continue
                        if int(pid) != os.getpid() and os.stat(f'/proc/{pid}').st_uid != os.getuid():
                            for key in ('API_TOKEN', 'AUTH_TOKEN', 'PASSWORD', 'PRIVATE_KEY', 'COOKIE_SECRET'):
                                if key in text.upper():
                                    found.append(f'{pid}/{part}: {key}')
                report(found, found or 'no secret in any readable environ or cmdline of other accounts')
                """
            ),
        ),
        Attack(
            "signal another user's server",
            f"try:\n    os.kill({victim_pid}, 0)\n    report(True, 'may signal it')\n"
            "except PermissionError as err:\n    report(False, err)",
        ),
        Attack(
            "connect to anvil's IPC socket or a TCP port",
            "hits = []\ntry:\n    s = socket.socket(socket.AF_UNIX)\n"
            f"    s.connect({str(ipc)!r})\n    hits.append('ipc')\n"
            "except OSError:\n    pass\n"
            f"for port in ({settings.chain.anvil_port}, 8545):\n"
            "    try:\n        socket.create_connection(('127.0.0.1', port), timeout=2)\n        hits.append(port)\n"
            "    except OSError:\n        pass\n"
            "report(hits, hits or 'no way to the node')",
        ),
        Attack(
            "use the proxy's API without its token",
            f"import httpx\nr = httpx.get('http://127.0.0.1:{settings.hub.proxy_api_port}/api/routes')\n"
            "report(r.status_code == 200, r.status_code)",
        ),
        Attack(
            "list every user with the server's own token",
            "import httpx\nr = httpx.get(os.environ['JUPYTERHUB_API_URL'] + '/users',"
            " headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
            "report(r.status_code == 200, r.status_code)",
        ),
        Attack(
            "log in as another student with the demo password",
            f"import httpx\nbody = {{'auth': {{'username': {VICTIM!r}, 'password': {demo_password!r}}}}}\n"
            f"r = httpx.post(os.environ['JUPYTERHUB_API_URL'] + '/users/{VICTIM}/tokens', json=body)\n"
            "report(r.status_code == 201, r.status_code)",
        ),
        Attack(
            "mint OPEN with the faucet (admins only)",
            f"r = ol._http.post('/services/platform/api/admin/faucet', json={{'user': {ATTACKER!r}, 'open': '1000'}})\n"
            "report(r.status_code == 200, r.status_code)",
        ),
        Attack(
            "control the chain node through the gateway",
            "r = ol._http.post('/services/chain/', json={'jsonrpc': '2.0', 'id': 1, 'method': 'anvil_setBalance',"
            " 'params': ['0x' + '11' * 20, '0xffffffffffffffffffff']})\n"
            "report('error' not in r.json(), r.text)",
        ),
        Attack(
            "spend anvil's public dev account #0 through the gateway",
            textwrap.dedent(
                """
                from eth_account import Account
                dev = Account.from_key('0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80')
                tx = dev.sign_transaction({'to': '0x' + '22' * 20, 'value': 1, 'gas': 21000, 'gasPrice': 10**10,
                                           'nonce': 0, 'chainId': 31337})
                r = ol._http.post('/services/chain/', json={'jsonrpc': '2.0', 'id': 1,
                                 'method': 'eth_sendRawTransaction', 'params': ['0x' + tx.raw_transaction.hex()]})
                report('error' not in r.json(), r.text)
                """
            ),
        ),
        Attack(
            "become root or another account (setuid, sudo, su)",
            textwrap.dedent(
                f"""
                hits = []
                for attempt in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0])):
                    try:
                        attempt()
                        hits.append('set id')
                    except (PermissionError, OSError):
                        pass
                for cmd in (['sudo', '-n', 'id', '-u'], ['su', '-c', 'id -u', '{VICTIM}']):
                    try:
                        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
                        if out.returncode == 0:
                            hits.append(' '.join(cmd))
                    except (OSError, subprocess.TimeoutExpired):
                        pass
                report(hits or os.geteuid() == 0, hits or 'uid stays ' + str(os.getuid()))
                """
            ),
        ),
        Attack(
            "leave the server's cgroup (its memory and process limits)",
            textwrap.dedent(
                """
                hits = []
                for line in open('/proc/self/cgroup').read().splitlines():
                    _, controllers, path = line.split(':', 2)
                    for name in controllers.split(','):
                        parent = f'/sys/fs/cgroup/{name}{os.path.dirname(path)}/cgroup.procs'
                        if name in ('memory', 'pids') and os.path.exists(parent):
                            try:
                                open(parent, 'w').write(str(os.getpid()))
                                hits.append(parent)
                            except OSError:
                                pass
                report(hits, hits or 'stays in its groups')
                """
            ),
        ),
        Attack(
            "start more processes than the server may run",
            textwrap.dedent(
                f"""
                import time
                children = []
                try:
                    for _ in range({ESCAPE_HUB["spawner"]["max_processes"] + 40}):
                        children.append(subprocess.Popen(['sleep', '30']))
                except OSError as err:
                    detail = f'stopped after {{len(children)}}: {{err}}'
                else:
                    detail = f'started {{len(children)}}'
                for child in children:
                    child.kill(); child.wait()
                report(detail.startswith('started'), detail)
                """
            ),
        ),
    ]


def run_attack(hub: RunningHub, token: str, attack: Attack) -> dict[str, Any]:
    output = run_in_kernel(hub, ATTACKER, token, PRELUDE + attack.code, timeout=180)
    lines = [line for line in output.splitlines() if line.startswith("ESCAPE ")]
    assert len(lines) == 1, f"{attack.name}: no verdict in {output!r}"
    verdict = json.loads(lines[0][len("ESCAPE ") :])
    return {"attack": attack.name, **verdict}


def memory_kill_attack(hub: RunningHub, token: str) -> dict[str, Any]:
    """Use more memory than the server may: the kernel must die, and the next one must say why, in the notebook."""
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n"
    try:
        run_in_kernel(hub, ATTACKER, token, hog, timeout=120)
        return {"attack": "use more memory than the server may", "succeeded": True, "detail": "never stopped"}
    except (RuntimeError, TimeoutError, OSError, ValueError) as err:
        died = f"kernel stopped: {type(err).__name__}"
    message = run_in_kernel(hub, ATTACKER, token, "print('after the kill')", timeout=120)
    explained = "stopped by the system because your server used more than" in message
    return {
        "attack": "use more memory than the server may",
        "succeeded": not explained,
        "detail": f"{died}; next kernel says: {message.strip()[:200]}",
    }


def victim_server_pid(hub: RunningHub) -> int:
    """The victim's single-user server process (root looks it up; the attacker gets only the number)."""
    for pid in processes_of(pwd.getpwnam(hub.home(VICTIM).name).pw_uid):
        try:
            if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no server process of {VICTIM}")


def run_suite(hub: RunningHub) -> list[dict[str, Any]]:
    """Every attack against `hub` (a multi-user hub with ESCAPE_HUB's limits); one result per attack."""
    victim_token = hub.ensure_user(VICTIM)
    hub.spawn(VICTIM)
    run_in_kernel(hub, VICTIM, victim_token, "open('secret-notes.txt', 'w').write('my private notes')")
    token = hub.ensure_user(ATTACKER)
    hub.spawn(ATTACKER)
    results = [run_attack(hub, token, attack) for attack in build_attacks(hub, victim_server_pid(hub))]
    results.append(memory_kill_attack(hub, token))
    return results


def merge_results(path: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the escape keys into `path`, keeping the keys other suites (the API fuzzer) wrote there."""
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(
        escape_attempts=len(results),
        escape_succeeded=sum(result["succeeded"] for result in results),
        escape_results=results,
        escape_command=command_line(),
        escape_machine={"platform": platform.platform(), "python": platform.python_version()},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return current


def main() -> int:
    if os.geteuid() != 0:
        print("escape_suite: run as root (it starts a multi-user hub that creates OS accounts)", file=sys.stderr)
        return 2
    with running_hub(**ESCAPE_HUB) as hub:
        results = run_suite(hub)
    summary = merge_results(RESULTS, results)
    for result in results:
        print(f"{'ESCAPED' if result['succeeded'] else 'blocked'}\t{result['attack']}\t{result['detail']}")
    print(f"{summary['escape_attempts']} attempts, {summary['escape_succeeded']} succeeded")
    return 1 if summary["escape_succeeded"] else 0


if __name__ == "__main__":
    sys.exit(main())
