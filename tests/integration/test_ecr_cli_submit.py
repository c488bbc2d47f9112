"""`sage ecr app submit` against the real ECR API: from a file with --namespace/--url/--branch,
and from a git repository (served by `git daemon` on loopback) that the command clones itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.auth import call
from tests.support.builder import GitServer, commit_all
from tests.support.builder.servers import git as run_git
from tests.support.cli import run_sage
from tests.support.ecr import busless_config, running_ecr
from tests.support.names import sfx

ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "services" / "ecr-api" / "tests" / "corpus"


@pytest.fixture(scope="module")
async def ecr(database_url, auth_settings):
    async with running_ecr(busless_config(database_url, auth_settings("ecr-api"))) as running:
        yield running


@pytest.fixture(scope="module")
async def token(make_user):
    return await make_user(f"cli-{sfx()}")


async def sage(ecr, token: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    done = await run_sage(ecr.url, token, *args, cwd=cwd, within=120)
    return done.code, done.out, done.err


def repository(git: GitServer, tmp_path: Path, files: dict[str, str], branch: str = "main") -> str:
    """A served repository holding `files` on `branch` (and `main`); its git:// URL."""
    name = f"app-{sfx()}"
    work = tmp_path / name
    work.mkdir()
    (work / "Dockerfile").write_text("FROM scratch\n")
    commit_all(work, "first", branch="main")
    if branch != "main":
        run_git(work, "checkout", "-q", "-b", branch)
    for path, text in files.items():
        (work / path).write_text(text)
    commit_all(work, "describe the app", branch=branch)
    git.publish(name, work)
    return git.url(name)


async def test_submit_a_file_with_namespace_url_and_branch_from_the_command_line(ecr, token):
    ns = f"lab{sfx()}"
    url = "https://git.example.org/lab/wildlife-trap.git"
    args = ("ecr", "app", "submit", "--namespace", ns, "--url", url, "--branch", "dev")
    code, out, err = await sage(ecr, token, *args, str(CORPUS / "wildlife-trap.yaml"), "--json")
    assert code == 0, err
    app = json.loads(out)
    assert app["id"] == f"{ns}/wildlife-trap:0.1.0"
    assert app["source"]["url"] == url and app["source"]["branch"] == "dev"


async def test_submit_a_repository_reads_its_sage_yaml_and_sends_its_url_and_branch(
    ecr, http, token, git_server, tmp_path
):
    ns = f"lab{sfx()}"
    text = (CORPUS / "sound-events.yaml").read_text() + "extra_field: kept\n"
    url = repository(git_server, tmp_path, {"sage.yaml": text}, branch="release")
    args = ("ecr", "app", "submit", f"{url}@release", "--namespace", ns, "--json")
    code, out, err = await sage(ecr, token, *args)
    assert code == 0, err
    app = json.loads(out)
    assert app["id"] == f"{ns}/sound-events:0.1.0"
    assert app["source"]["url"] == url and app["source"]["branch"] == "release"
    assert app["testing"]["command"] == ["test.py"] and app["extra_field"] == "kept"
    assert "warning: unknown field 'extra_field' kept as is" in err
    status, got = await call(
        http, "GET", f"{ecr.url}/api/apps/{ns}/sound-events/0.1.0", token=token
    )
    assert status == 200 and got["source"]["branch"] == "release"


async def test_submit_a_repository_without_a_branch_uses_its_default_and_reads_sage_json(
    ecr, http, token, git_server, tmp_path
):
    ns = f"lab{sfx()}"
    url = repository(git_server, tmp_path, {"sage.json": (CORPUS / "hello-world.json").read_text()})
    code, out, err = await sage(ecr, token, "ecr", "app", "submit", url, "--namespace", ns)
    assert code == 0, err
    assert out.strip() == f"submitted {ns}/hello-world:1.0.0"
    status, got = await call(http, "GET", f"{ecr.url}/api/apps/{ns}/hello-world/1.0.0", token=token)
    assert status == 200
    assert got["source"]["url"] == url and got["source"]["branch"] == "main"


async def test_a_repository_without_a_description_or_branch_is_a_clear_error(
    ecr, token, git_server, tmp_path
):
    url = repository(git_server, tmp_path, {"README.md": "no description here\n"})
    code, _, err = await sage(ecr, token, "ecr", "app", "submit", url)
    assert code == 1 and "has none of sage.yaml, sage.yml, sage.json" in err
    code, _, err = await sage(ecr, token, "ecr", "app", "submit", f"{url}@nope")
    assert code == 1 and "git clone failed" in err and "nope" in err


async def test_an_unapproved_users_submission_is_registered_and_not_waited_for(ecr, make_user):
    newcomer = await make_user(f"new-{sfx()}", approved=False)
    ns = f"lab{sfx()}"
    spec = str(CORPUS / "env-sensors.yaml")
    code, out, err = await sage(ecr, newcomer, "ecr", "app", "submit", spec, "--namespace", ns)
    assert code == 0, err
    assert out.startswith(f"registered {ns}/env-sensors:0.4.3 (not built")
    args = ("ecr", "app", "submit", spec, "--namespace", ns, "--force", "--wait")
    code, out, err = await sage(ecr, newcomer, *args)
    assert code == 1 and "nothing to wait for" in err
