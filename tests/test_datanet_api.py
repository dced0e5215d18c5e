"""Datanets through the real hub: the SDK and raw HTTP as two users, bad input, curation, versions, proofs, chain."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import datasets
import httpx
import pandas as pd
import pytest

from openledger_sdk import connect
from openledger_sdk.datanets import ContributionRejected, Datanet, verify_row
from openledger_sdk.errors import OpenLedgerError
from tests.hub_harness import RunningHub

pytestmark = pytest.mark.e2e

API = "/services/platform/api/datanets"
QA = {"prompt": "str", "response": "str"}
SUFFIX = uuid.uuid4().hex[:6]


def unique(name: str) -> str:
    return f"{name}-{SUFFIX}"


def qa(i: int, topic: str = "datanets") -> dict[str, str]:
    return {"prompt": f"Question {i} about {topic}?", "response": f"Answer {i}: {topic} keep provenance per row."}


@pytest.fixture(scope="module")
def tokens(platform: RunningHub) -> dict[str, str]:
    return {name: platform.ensure_user(name) for name in ("dn-alice", "dn-bob", "dn-carol")}


@pytest.fixture(scope="module")
def alice(platform: RunningHub, tokens: dict[str, str]):
    return connect(platform.url, tokens["dn-alice"])


@pytest.fixture(scope="module")
def bob(platform: RunningHub, tokens: dict[str, str]):
    return connect(platform.url, tokens["dn-bob"])


@pytest.fixture(scope="module")
def public(alice) -> Datanet:
    return alice.datanets.create(
        unique("support-qa"),
        summary="Support questions and answers",
        description="# Support\nQuestions from the help desk.",
        tags=["support", "qa"],
        license="CC-BY-4.0",
        schema={"prompt": str, "response": str},
    )


@pytest.fixture(scope="module")
def private(alice) -> Datanet:
    dn = alice.datanets.create(unique("secret-notes"), schema="text", visibility="private", approval="auto")
    dn.contribute(["A private note that only members may read, long enough to be indexed."])
    dn.publish()
    return dn


def test_create_list_search_get(alice, bob, public: Datanet) -> None:
    assert public.owner == "dn-alice" and public.schema == QA and public.info["license"] == "CC-BY-4.0"
    assert public.name in [d.name for d in bob.datanets.list()]
    assert [d.name for d in bob.datanets.search("help desk", tags=["support"])] == [public.name]
    assert bob.datanets.search("help desk", tags=["nonexistent-tag"]) == []
    seen = bob.datanets.get(public.name)
    assert seen.info["your_role"] is None and seen.info["description"].startswith("# Support")
    with pytest.raises(OpenLedgerError) as taken:
        bob.datanets.create(public.name, schema=QA)
    assert taken.value.status == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name!"}, "name"),
        ({"name": unique("lic"), "license": "Not-A-License"}, "license"),
        ({"name": unique("sch"), "schema": {"prompt": "list"}}, "schema"),
        ({"name": unique("vis"), "visibility": "secret"}, "visibility"),
    ],
)
def test_create_validates_its_input(platform: RunningHub, tokens, body: dict, field: str) -> None:
    with platform.as_token(tokens["dn-alice"]) as client:
        answer = client.post(API, json=body)
    assert answer.status_code == 422
    assert field in json.dumps(answer.json()["detail"])


def test_contribute_each_file_format(bob, public: Datanet, tmp_path: Path) -> None:
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(qa(i, "jsonl")) for i in range(3)) + "\n")
    as_json = tmp_path / "rows.json"
    as_json.write_text(json.dumps([qa(i, "json arrays") for i in range(2)]))
    csv = tmp_path / "rows.csv"
    pd.DataFrame([qa(i, "csv files") for i in range(2)]).to_csv(csv, index=False)
    parquet = tmp_path / "rows.parquet"
    pd.DataFrame([qa(i, "parquet") for i in range(2)]).to_parquet(parquet, index=False)
    submissions = [bob.datanets.get(public.name).contribute(path) for path in (jsonl, as_json, csv, parquet)]
    assert [s["rows"] for s in submissions] == [3, 2, 2, 2]
    assert [s["filename"] for s in submissions] == ["rows.jsonl", "rows.json", "rows.csv", "rows.parquet"]
    assert all(len(s["file_digest"]) == 64 and s["status"] == "pending" for s in submissions)
    frame = bob.datanets.get(public.name).contribute(pd.DataFrame([qa(i, "pandas frames") for i in range(2)]))
    dataset = bob.datanets.get(public.name).contribute(
        datasets.Dataset.from_list([qa(i, "hf datasets") for i in range(2)])
    )
    assert frame["rows"] == 2 and dataset["rows"] == 2


def test_text_and_markdown_files_split_into_rows(alice, tmp_path: Path) -> None:
    dn = alice.datanets.create(unique("free-text"), schema="text")
    txt = tmp_path / "notes.txt"
    txt.write_text("First paragraph of the notes file.\n\nSecond paragraph, a different topic entirely.\n")
    md = tmp_path / "guide.md"
    md.write_text("# A guide to uploads\n\n```python\nx = 1\n\ny = 2\n```\n")
    assert dn.contribute(txt)["rows"] == 2
    assert dn.contribute(md)["rows"] == 2
    rows = dn.submission_rows(dn.submissions()[-1]["id"])
    assert rows[1]["data"]["text"] == "```python\nx = 1\n\ny = 2\n```"


def _post_file(platform: RunningHub, token: str, name: str, filename: str, data: bytes) -> httpx.Response:
    with platform.as_token(token) as client:
        return client.post(f"{API}/{name}/files", params={"filename": filename}, content=data)


def test_zero_byte_file_is_a_clear_400(platform: RunningHub, tokens, public: Datanet) -> None:
    answer = _post_file(platform, tokens["dn-bob"], public.name, "empty.jsonl", b"")
    assert answer.status_code == 400
    assert answer.json()["detail"] == "empty.jsonl is empty (0 bytes): nothing to contribute"


def test_2gb_content_length_is_refused_before_the_body(platform: RunningHub, tokens, public: Datanet) -> None:
    answer = platform.refused_before_body(
        f"{API}/{public.name}/files?filename=huge.jsonl",
        tokens["dn-bob"],
        "application/octet-stream",
        2 * 1024**3,
        b'{"prompt": "only a few bytes follow"}\n',
    )
    assert "limit" in answer


def test_wrong_schema_reports_every_bad_line(bob, public: Datanet, tmp_path: Path) -> None:
    path = tmp_path / "wrong.jsonl"
    lines = [qa(100), {"question": "x", "answer": "y"}, qa(101), {"prompt": "no response"}, "not an object"]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    before = len(bob.datanets.get(public.name).submissions())
    with pytest.raises(ContributionRejected) as refused:
        bob.datanets.get(public.name).contribute(path)
    assert refused.value.status == 422
    assert [e["line"] for e in refused.value.errors] == [2, 4, 5]
    assert "unexpected field(s) 'question', 'answer'" in refused.value.errors[0]["error"]
    assert "line 2" in str(refused.value)
    assert len(bob.datanets.get(public.name).submissions()) == before  # nothing of it was stored


def test_binary_txt_is_refused_naming_the_file(platform: RunningHub, tokens, alice) -> None:
    dn = alice.datanets.create(unique("binary-check"), schema="text")
    answer = _post_file(
        platform, tokens["dn-bob"], dn.name, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"
    )
    assert answer.status_code == 400
    assert "photo.txt" in answer.json()["detail"] and "binary" in answer.json()["detail"]


def test_path_traversal_filenames(platform: RunningHub, tokens, public: Datanet) -> None:
    data_dir = platform.settings.data_dir
    refused = _post_file(platform, tokens["dn-bob"], public.name, "../../etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
    assert refused.status_code == 415 and "passwd" in refused.json()["detail"]
    row = json.dumps(qa(1, "path tricks")).encode() + b"\n"
    stored = _post_file(platform, tokens["dn-bob"], public.name, "../../evil.jsonl", row)
    assert stored.status_code == 201, stored.text
    assert stored.json()["filename"] == "evil.jsonl"
    assert not (data_dir.parent / "evil.jsonl").exists() and not (data_dir / "evil.jsonl").exists()
    assert not list(data_dir.rglob("evil.jsonl"))


def test_duplicate_of_itself_inside_one_upload(bob, public: Datanet) -> None:
    row = qa(1, "self duplicates")
    with pytest.raises(ContributionRejected) as refused:
        bob.datanets.get(public.name).contribute([row, qa(2, "self duplicates"), dict(row)])
    assert refused.value.errors == [{"line": 3, "kind": "duplicate", "error": "duplicate of line 1 in this upload"}]


def test_exact_and_near_duplicates_name_the_first_contributor(alice, bob, public: Datanet) -> None:
    original = {
        "prompt": "How are duplicate rows detected?",
        "response": "By keccak256 of canonical JSON, and MinHash.",
    }
    alice.datanets.get(public.name).contribute([original])
    near = dict(original, response=original["response"].replace("MinHash.", "MinHash!"))
    with pytest.raises(ContributionRejected) as refused:
        bob.datanets.get(public.name).contribute([original, near])
    exact, similar = refused.value.errors
    assert exact["kind"] == "duplicate" and exact["owner"] == "dn-alice"
    assert similar["kind"] == "near_duplicate" and similar["owner"] == "dn-alice"
    assert similar["row_id"] == exact["row_id"] and similar["similarity"] >= 0.85


def test_huge_single_row(bob, public: Datanet) -> None:
    with pytest.raises(ContributionRejected) as refused:
        bob.datanets.get(public.name).contribute([{"prompt": "big", "response": "x" * 200_000}])
    assert refused.value.errors[0]["kind"] == "too_large"
    assert "limit is 65536" in refused.value.errors[0]["error"]


def test_concurrent_uploads_of_the_same_row_exactly_one_wins(platform: RunningHub, tokens, public: Datanet) -> None:
    row = qa(1, "races between two users")
    answers: dict[str, httpx.Response] = {}
    start = threading.Barrier(2)

    def upload(user: str) -> None:
        with platform.as_token(tokens[user]) as client:
            start.wait()
            answers[user] = client.post(f"{API}/{public.name}/rows", json={"rows": [row]})

    threads = [threading.Thread(target=upload, args=(user,)) for user in ("dn-bob", "dn-carol")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    codes = sorted(answer.status_code for answer in answers.values())
    assert codes == [201, 422], {u: a.text for u, a in answers.items()}
    winner = next(u for u, a in answers.items() if a.status_code == 201)
    loser = next(a for a in answers.values() if a.status_code == 422)
    assert loser.json()["detail"]["errors"][0]["owner"] == winner


def test_curation_with_reasons(alice, bob, public: Datanet) -> None:
    dn_bob = bob.datanets.get(public.name)
    good = dn_bob.contribute([qa(1, "curation"), qa(2, "curation")])
    bad = dn_bob.contribute([qa(3, "spam links")])
    with pytest.raises(OpenLedgerError) as denied:
        dn_bob.approve(good["id"])
    assert denied.value.status == 403
    dn_alice = alice.datanets.get(public.name)
    assert {s["id"] for s in dn_alice.submissions(status="pending")} >= {good["id"], bad["id"]}
    dn_alice.approve(good)
    dn_alice.reject(bad["id"], reason="links to spam")
    mine = {s["id"]: s for s in dn_bob.submissions(mine=True)}
    assert mine[good["id"]]["status"] == "approved"
    assert (mine[bad["id"]]["status"], mine[bad["id"]]["reason"]) == ("rejected", "links to spam")


def test_publish_load_and_verify(alice, bob, public: Datanet, tmp_path: Path) -> None:
    dn_alice = alice.datanets.get(public.name)
    dn_alice.approve([s["id"] for s in dn_alice.submissions(status="pending")])
    version = dn_alice.publish()
    assert version["version"] >= 1 and version["merkle_root"].startswith("0x") and len(version["merkle_root"]) == 66
    dn_bob = bob.datanets.get(public.name)
    assert dn_bob.versions()[-1]["merkle_root"] == version["merkle_root"]
    ds = dn_bob.load(version["version"])
    assert isinstance(ds, datasets.Dataset) and len(ds) == version["row_count"]
    assert {"prompt", "response", "_row_id", "_contributor", "_row_hash"} <= set(ds.column_names)
    row = ds[0]
    proof = dn_bob.proof(row["_row_id"], version["version"])
    assert proof["root"] == version["merkle_root"]
    assert verify_row(row, proof["proof"], version["merkle_root"])
    assert not verify_row({**row, "response": "tampered"}, proof["proof"], version["merkle_root"])
    frame = dn_bob.to_pandas(version["version"])
    assert len(frame) == version["row_count"]
    path = dn_bob.download(version["version"], tmp_path)
    assert (
        path.name == f"{public.name}-v{version['version']}.parquet"
        and path.stat().st_size == version["snapshot"]["bytes"]
    )


def test_private_datanet_is_invisible_to_non_members(platform: RunningHub, tokens, bob, private: Datanet) -> None:
    assert private.name not in [d.name for d in bob.datanets.list()]
    assert bob.datanets.search(private.name) == []
    sub = private.submissions()[0]["id"]
    row_id = private.load()[0]["_row_id"]
    endpoints = [
        ("GET", ""),
        ("PUT", "/members"),
        ("POST", "/rows"),
        ("POST", "/files?filename=x.txt"),
        ("GET", "/submissions"),
        ("GET", f"/submissions/{sub}"),
        ("GET", f"/submissions/{sub}/rows"),
        ("POST", f"/submissions/{sub}/approve"),
        ("POST", f"/submissions/{sub}/reject"),
        ("POST", "/versions"),
        ("GET", "/versions"),
        ("GET", "/versions/1"),
        ("GET", "/versions/1/snapshot"),
        ("GET", f"/versions/1/rows/{row_id}/proof"),
    ]
    with platform.as_token(tokens["dn-bob"]) as client:
        for method, path in endpoints:
            body = {"members": ["dn-bob"], "rows": [{"text": "x"}], "reason": "r"} if method != "GET" else None
            answer = client.request(method, f"{API}/{private.name}{path}", json=body)
            assert answer.status_code == 404, (method, path, answer.text)
    # A member sees it and may contribute; the owner stays the only one who may publish.
    private.set_members(members=["dn-carol"])
    carol = connect(platform.url, tokens["dn-carol"])
    assert carol.datanets.get(private.name).info["your_role"] == "member"
    with pytest.raises(OpenLedgerError) as denied:
        carol.datanets.get(private.name).publish()
    assert denied.value.status == 403


def test_owner_only_actions_on_a_public_datanet(platform: RunningHub, tokens, alice, public: Datanet) -> None:
    own = alice.datanets.get(public.name).contribute([qa(1, "owner only actions")])
    with platform.as_token(tokens["dn-bob"]) as client:
        for method, path, body in [
            ("PUT", "/members", {"members": ["dn-bob"]}),
            ("POST", f"/submissions/{own['id']}/approve", {}),
            ("POST", f"/submissions/{own['id']}/reject", {"reason": "mine now"}),
            ("GET", f"/submissions/{own['id']}", None),
            ("GET", f"/submissions/{own['id']}/rows", None),
            ("POST", "/versions", None),
        ]:
            answer = client.request(method, f"{API}/{public.name}{path}", json=body)
            assert answer.status_code == 403, (method, path, answer.text)
        assert client.get(f"{API}/{public.name}/submissions").json() == [
            s for s in client.get(f"{API}/{public.name}/submissions").json() if s["contributor"] == "dn-bob"
        ]
    assert httpx.get(f"{platform.url}{API}").status_code == 401


def test_version_root_is_written_on_chain(platform: RunningHub, alice, public: Datanet) -> None:
    version = alice.datanets.get(public.name).version("latest")
    if version["chain"]["status"] == "off":
        pytest.skip("the platform has no ledger deployment in runtime.extras['ledger'] (relay feature not wired)")
    deadline = time.monotonic() + 60
    while version["chain"]["status"] != "confirmed" and time.monotonic() < deadline:
        assert version["chain"]["status"] != "failed", version["chain"]
        time.sleep(0.5)
        version = alice.datanets.get(public.name).version("latest")
    assert version["chain"]["status"] == "confirmed", version["chain"]
    from hub.ledger.contracts import Ledger
    from hub.ledger.deploy import connect as connect_chain
    from hub.ledger.deploy import deployments_dir

    settings = platform.settings
    record = json.loads((deployments_dir(settings.data_dir, settings.chain.chain_id) / "deployments.json").read_text())
    ledger = Ledger.at(
        connect_chain(settings.chain_rpc_url, settings.chain.chain_id), settings.chain.chain_id, record["contracts"]
    )
    on_chain = ledger.datanets.get_version(version["chain"]["datanet_id"], version["version"])
    assert "0x" + on_chain.merkle_root.hex() == version["merkle_root"]
    assert on_chain.row_count == version["row_count"]
    assert "0x" + on_chain.contributor_counts_root.hex() == version["contributors_root"]
