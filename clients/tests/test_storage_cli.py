"""`sage storage bucket|permissions|files list|delete`: SAGE's routes, flags and JSON shapes."""

from __future__ import annotations

import json

from clients.tests.standin import StandIn


def _bucket(sage, name: str = "camera7") -> str:
    return sage.json("storage", "bucket", "create", "--datatype", "training-data", "--name", name)[
        "id"
    ]


def test_bucket_create_prints_the_bucket_json_as_the_seed_example(sage, server: StandIn) -> None:
    result = sage("storage", "bucket", "create", "--datatype", "training-data", "--name", "camera7")
    assert result.exit_code == 0
    bucket = json.loads(result.stdout)
    assert bucket["name"] == "camera7" and bucket["type"] == "training-data"
    assert set(bucket) >= {"id", "name", "owner", "type", "time_created", "time_last_updated"}
    sent = server.state.requests[-1]
    assert (sent["method"], sent["path"]) == ("POST", "/api/v1/objects")
    assert sent["query"] == {"type": "training-data", "name": "camera7"}


def test_bucket_create_public_sends_the_flag(sage, server: StandIn) -> None:
    sage("storage", "bucket", "create", "--datatype", "model", "--public")
    assert server.state.requests[-1]["query"] == {"type": "model", "public": "true"}


def test_bucket_show_list_rename_delete(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    assert sage.json("storage", "bucket", "show", bid)["name"] == "camera7"
    assert [b["id"] for b in sage.json("storage", "bucket", "list")] == [bid]
    human = sage("storage", "bucket", "list")
    assert bid in human.stdout and "camera7" in human.stdout
    renamed = sage.json("storage", "bucket", "rename", bid, "camera8")
    assert renamed["name"] == "camera8"
    assert server.state.requests[-1]["method"] == "PATCH"
    assert sage.json("storage", "bucket", "delete", bid) == {"deleted": [bid]}
    assert server.state.requests[-1]["path"] == f"/api/v1/objects/{bid}"
    assert server.state.buckets == {}


def test_permissions_use_the_sage_grant_shape(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    added = sage.json("storage", "permissions", "add", bid, "user", "bob", "read")
    assert added == {"granteeType": "USER", "grantee": "bob", "permission": "READ"}
    assert server.state.requests[-1]["query"] == {"permissions": "True"}
    public = sage.json("storage", "permissions", "public", bid)
    assert public == {"granteeType": "GROUP", "grantee": "AllUsers", "permission": "READ"}
    grants = sage.json("storage", "permissions", "show", bid)
    assert [g["grantee"] for g in grants] == ["alice", "bob", "AllUsers"]
    sage.json("storage", "permissions", "private", bid)
    assert server.state.requests[-1]["query"] == {
        "permissions": "True",
        "grantee": "GROUP:AllUsers",
    }
    sage.json("storage", "permissions", "delete", bid, "USER", "bob", "--permission", "READ")
    assert server.state.requests[-1]["query"]["grantee"] == "USER:bob:READ"
    assert [g["grantee"] for g in server.state.grants[bid]] == ["alice"]


def test_permission_values_are_checked_before_sending(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    result = sage("storage", "permissions", "add", bid, "USER", "bob", "EVERYTHING")
    assert result.exit_code == 2
    assert server.state.requests[-1]["method"] == "POST"  # nothing sent after the create


def _fill(server: StandIn, bid: str, keys: list[str]) -> None:
    server.state.objects[bid].update({k: b"x" * (i + 1) for i, k in enumerate(keys)})


def test_listing_follows_every_page_with_all(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    keys = [f"day1/img{i:02d}.jpg" for i in range(7)]
    _fill(server, bid, keys)
    listing = sage.json(
        "storage", "files", "list", bid, "--prefix", "day1", "--limit", "3", "--all"
    )
    assert [c["Key"] for c in listing["Contents"]] == [k.removeprefix("day1/") for k in keys]
    assert listing["IsTruncated"] is False and "NextContinuationToken" not in listing
    pages = [r for r in server.state.requests if r["path"] == f"/api/v1/objects/{bid}/day1/"]
    assert [p["query"].get("ContinuationToken") for p in pages] == [None, "p3", "p6"]


def test_listing_without_all_is_one_page_and_says_there_is_more(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    _fill(server, bid, ["a.jpg", "b.jpg", "c.jpg"])
    page = sage.json("storage", "files", "list", bid, "--limit", "2")
    assert page["IsTruncated"] is True and page["NextContinuationToken"] == "p2"
    human = sage("storage", "files", "list", bid, "--limit", "2")
    assert "a.jpg" in human.stdout and "c.jpg" not in human.stdout
    assert "--continuation-token p2" in human.stderr
    rest = sage.json("storage", "files", "list", bid, "--continuation-token", "p2")
    assert [c["Key"] for c in rest["Contents"]] == ["c.jpg"]


def test_listing_shows_folders_unless_recursive(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    _fill(server, bid, ["top.txt", "day1/a.jpg", "day1/sub/b.jpg"])
    flat = sage.json("storage", "files", "list", bid)
    assert flat["CommonPrefixes"] == [{"Prefix": "day1/"}]
    deep = sage.json("storage", "files", "list", bid, "--recursive")
    assert server.state.requests[-1]["query"] == {"recursive": "true"}
    assert [c["Key"] for c in deep["Contents"]] == ["day1/a.jpg", "day1/sub/b.jpg", "top.txt"]


def test_files_delete_deletes_keys_and_never_the_bucket(sage, server: StandIn) -> None:
    bid = _bucket(sage)
    _fill(server, bid, ["a b.jpg", "day1/c.jpg"])
    out = sage.json("storage", "files", "delete", bid, "/a b.jpg", "day1/c.jpg")
    assert out["deleted"] == ["/a b.jpg", "/day1/c.jpg"]
    assert server.state.objects[bid] == {}
    refused = sage("storage", "files", "delete", bid, "/")
    assert refused.exit_code == 2
    assert bid in server.state.buckets


def test_store_url_routes_storage_elsewhere(sage, server: StandIn) -> None:
    listed = sage.json(
        "storage",
        "bucket",
        "list",
        env={
            "SAGE_HOST": "http://127.0.0.1:9",
            "SAGE_STORE_URL": server.url,
        },
    )
    assert listed == []
