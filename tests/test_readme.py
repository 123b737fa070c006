"""The README's command blocks chain, without running a training.

The production block of README.md (and the quick start of docs/production.md) must be a sequence
a user can paste after `make setup`: every `stgraph` line parses with the real CLI parser, every
model URI it forecasts or serves from (its own, and the shipped job's in `pipelines/jobs/`) names
a model that an earlier line registers with `stgraph fit --register` and promotes to that alias,
trained on the data the job reads. The GPU install line of the README is the Makefile's.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from stgraph.cli import build_parser
from stgraph.serving.jobs import load_job

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PRODUCTION = ROOT / "docs" / "production.md"
PROGRAMS = {"source", "make", "stgraph", "mlflow"}  # what the README's production block may call


def _section(path: Path, heading: str) -> str:
    """The text under ``heading`` (any level), up to the next heading of the same or a higher
    level."""
    text = path.read_text()
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert match, f"{path.name} has no heading '{heading}'"
    level = len(match[1])
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)


def _commands(block: str) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments dropped, ``&&``
    and ``;`` split, leading ``VAR=value`` assignments removed."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";"):
                while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
                    command.pop(0)
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    return commands


def _program(command: list[str]) -> str:
    return Path(command[0]).name


def _parse(command: list[str]):
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(command)}` is not a valid stgraph command line")


def _production_block() -> list[list[str]]:
    blocks = _bash_blocks(_section(README, "Forecasting in production"))
    assert blocks, "README's 'Forecasting in production' has no ```bash block"
    return _commands(blocks[0])


def _production_docs_quick_start() -> list[list[str]]:
    return _commands(_bash_blocks(PRODUCTION.read_text())[0])


def _model_uri_parts(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"models:/([^@/]+)@([^@/]+)", uri)
    assert match, f"'{uri}' is not models:/NAME@ALIAS"
    return match[1], match[2]


def _check_chain(commands: list[list[str]], where: str) -> set[str]:
    """Walk the commands in order; every model URI used must have been registered (by a fit on
    the data the job reads) and promoted to its alias by an earlier line. Returns the URIs
    used."""
    registered: dict[str, str] = {}  # model name -> dataset it was fitted on
    promoted: set[tuple[str, str]] = set()
    used = set()

    def use(uri: str, dataset: str | None, line: list[str]) -> None:
        name, alias = _model_uri_parts(uri)
        shown = shlex.join(line)
        assert name in registered, (
            f"{where}: `{shown}` uses {uri}, but no earlier `stgraph fit ... --register {name}`"
        )
        assert (name, alias) in promoted, (
            f"{where}: `{shown}` uses {uri}, but no earlier `stgraph models promote {name} "
            f"VERSION {alias}`"
        )
        if dataset is not None:
            assert registered[name] == dataset, (
                f"{where}: `{shown}` reads '{dataset}' with {uri}, fitted on '{registered[name]}'"
            )
        used.add(uri)

    for command in commands:
        if _program(command) == "mlflow" and command[1:3] == ["models", "serve"]:
            use(command[command.index("-m") + 1], None, command)
        if _program(command) != "stgraph":
            continue
        args = _parse(command)
        if args.command == "fit" and args.register:
            registered[args.register] = args.dataset
        elif args.command == "models" and getattr(args, "action", None) == "promote":
            assert args.name in registered, f"{where}: promotes unregistered '{args.name}'"
            promoted.add((args.name, args.alias))
        elif args.command == "forecast":
            use(args.model_uri, args.dataset, command)
        elif args.command == "job":
            job = load_job(args.name)
            use(job.model_uri, job.dataset, command)
    return used


def test_the_production_block_is_a_chain_of_valid_commands():
    commands = _production_block()
    programs = {_program(c) for c in commands}
    assert programs <= PROGRAMS, f"unexpected programs in the production block: {programs}"
    _check_chain(commands, "README 'Forecasting in production'")
    parsed = [_parse(c) for c in commands if _program(c) == "stgraph"]
    steps = {(args.command, getattr(args, "action", None)) for args in parsed}
    for command, action in [
        ("fit", None),
        ("models", "promote"),
        ("forecast", None),
        ("job", "run"),
        ("job", "backfill"),
        ("job", "score"),
    ]:
        shown = f"{command} {action or ''}".strip()
        assert (command, action) in steps, f"the production block lacks `stgraph {shown}`"


def test_the_shipped_job_forecasts_with_the_model_the_readme_registers_and_promotes():
    job = load_job("simulator")
    name, alias = _model_uri_parts(job.model_uri)
    parsed = [_parse(c) for c in _production_block() if _program(c) == "stgraph"]
    assert any(
        a.command == "fit" and (a.register, a.dataset) == (name, job.dataset) for a in parsed
    ), (
        f"pipelines/jobs/simulator.yaml forecasts with {job.model_uri}; the README's production "
        f"block must `stgraph fit {job.dataset} --register {name}`"
    )
    assert any(
        getattr(a, "action", None) == "promote" and (a.name, a.alias) == (name, alias)
        for a in parsed
    ), f"the README's production block must `stgraph models promote {name} VERSION {alias}`"


def test_the_production_docs_quick_start_is_a_chain_of_valid_commands():
    commands = _production_docs_quick_start()
    assert any(_program(c) == "stgraph" and c[1] == "forecast" for c in commands)
    _check_chain(commands, "docs/production.md quick start")


def _gpu_line(text: str, where: str) -> str:
    lines = re.findall(r"^[#\s]*(make setup TORCH_SPEC=.*TORCH_INDEX=.*?)\s*$", text, re.M)
    assert len(lines) == 1, f"{where}: expected one `make setup TORCH_SPEC=... TORCH_INDEX=...`"
    return lines[0]


def test_the_readme_gpu_install_line_is_the_makefiles():
    makefile = (ROOT / "Makefile").read_text()
    readme = _gpu_line(README.read_text(), "README.md")
    assert readme == _gpu_line(makefile, "Makefile")
    # and it installs the torch the CPU default pins
    default = re.search(r"^TORCH_SPEC \?= (\S+)", makefile, re.M)[1]
    assert f'TORCH_SPEC="{default}"' in readme
