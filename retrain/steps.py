"""The retraining pipeline, declared once: steps, their scripts, inputs and outputs.

`pipeline.py` turns this into Azure ML command components; `local_runner.py` turns it into
subprocess command lines. Both therefore run the same scripts with the same arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMPONENTS_DIR = Path(__file__).parent / "components"

DATA, TEXT, NUMBER = "uri_folder", "string", "integer"


@dataclass(frozen=True)
class Port:
    name: str
    kind: str = DATA
    optional: bool = False


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    def argv_template(self) -> list[str]:
        """`--name ${{inputs.name}}` pairs; optional inputs in Azure ML's `$[[...]]` brackets."""
        parts = []
        for port in self.inputs:
            value = f"${{{{inputs.{port.name}}}}}"
            # Azure ML substitutes values into a shell command: quote text so JSON survives the shell.
            text = f"--{port.name} '{value}'" if port.kind == TEXT else f"--{port.name} {value}"
            parts.append(f"$[[{text}]]" if port.optional else text)
        parts += [f"--{port.name} ${{{{outputs.{port.name}}}}}" for port in self.outputs]
        return parts

    def command(self) -> str:
        return " ".join(["python", self.script, *self.argv_template()])


SCHEMA = (Port("features", TEXT), Port("label", TEXT))

STEPS: tuple[Step, ...] = (
    Step("prep", "prep.py",
         inputs=(Port("reference"), Port("recent", optional=True), Port("rule", TEXT), *SCHEMA,
                 Port("time_column", TEXT), Port("holdout_days", NUMBER)),
         outputs=(Port("out_train"), Port("out_holdout"))),
    Step("train", "train.py",
         inputs=(Port("train"), *SCHEMA, Port("random_state", NUMBER)),
         outputs=(Port("model_out"),)),
    Step("evaluate", "evaluate.py",
         inputs=(Port("model"), Port("champion", optional=True), Port("holdout"), *SCHEMA,
                 Port("slices", TEXT), Port("train", optional=True), Port("time_column", TEXT, optional=True)),
         outputs=(Port("metrics_out"), Port("reference_out"))),
    Step("register", "register.py",
         inputs=(Port("model"), Port("metrics"), Port("name", TEXT), Port("lineage", TEXT),
                 Port("registry", TEXT, optional=True), Port("reference", optional=True)),
         outputs=(Port("registered"),)),
)

# Which earlier output feeds which later input: (step, input) <- (step, output).
WIRING: dict[tuple[str, str], tuple[str, str]] = {
    ("train", "train"): ("prep", "out_train"),
    ("evaluate", "model"): ("train", "model_out"),
    ("evaluate", "holdout"): ("prep", "out_holdout"),
    ("evaluate", "train"): ("prep", "out_train"),
    ("register", "model"): ("train", "model_out"),
    ("register", "metrics"): ("evaluate", "metrics_out"),
    ("register", "reference"): ("evaluate", "reference_out"),
}

RULES_DOC = """Training-data rules for `prep` (the holdout is always the last `holdout_days` of labelled data):
  reference+recent  the reference table plus recent labelled rows before the holdout
  recent_only       only recent labelled rows before the holdout
  sliding:<days>    reference and recent rows from the <days> days before the holdout
"""


def step(name: str) -> Step:
    for candidate in STEPS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no pipeline step {name!r}")
