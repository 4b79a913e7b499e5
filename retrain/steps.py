"""The retraining pipeline, declared once: steps, their scripts, inputs and outputs.

prep, evaluate and register are the product's own scripts (components/). train is the team's command,
called with the training contract (docs/training.md):
    <command> --data DIR --target COLUMN --task binary|multiclass|regression --model-out DIR
where DIR holds train.parquet and schema.json, and the command writes an MLflow model to --model-out.

`pipeline.py` turns this into Azure ML command components; `local_runner.py` turns it into command lines.
Both therefore run the same scripts with the same arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMPONENTS_DIR = Path(__file__).parent / "components"

DATA, TEXT, NUMBER = "uri_folder", "string", "integer"
TRAIN = "train"  # the step that runs the team's command


@dataclass(frozen=True)
class Port:
    name: str
    kind: str = DATA
    optional: bool = False
    flag: str = ""  # the command-line option, when it is not `--<name>`

    @property
    def option(self) -> str:
        return f"--{self.flag or self.name}"


@dataclass(frozen=True)
class Step:
    name: str
    script: str | None  # a script in components/, or None for the team's command
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    def argv_template(self) -> list[str]:
        """`--name ${{inputs.name}}` pairs; optional inputs in Azure ML's `$[[...]]` brackets."""
        parts = []
        for port in self.inputs:
            value = f"${{{{inputs.{port.name}}}}}"
            # Azure ML substitutes values into a shell command: quote text so JSON survives the shell.
            text = f"{port.option} '{value}'" if port.kind == TEXT else f"{port.option} {value}"
            parts.append(f"$[[{text}]]" if port.optional else text)
        parts += [f"{port.option} ${{{{outputs.{port.name}}}}}" for port in self.outputs]
        return parts

    def command(self, program: str | None = None) -> str:
        """The command line: `python <script> ...`, or the team's `program` followed by the contract's options."""
        head = program if self.script is None else f"python {self.script}"
        if not head:
            raise ValueError(f"step {self.name} runs the team's command: pass it as `program`")
        return " ".join([head, *self.argv_template()])


SCHEMA = (Port("features", TEXT), Port("label", TEXT), Port("task", TEXT))

STEPS: tuple[Step, ...] = (
    Step("prep", "prep.py",
         inputs=(Port("reference"), Port("recent", optional=True), Port("rule", TEXT), *SCHEMA,
                 Port("time_column", TEXT), Port("holdout_days", NUMBER)),
         outputs=(Port("out_train"), Port("out_holdout"))),
    Step(TRAIN, None,
         inputs=(Port("data"), Port("target", TEXT), Port("task", TEXT)),
         outputs=(Port("model_out", flag="model-out"),)),
    Step("evaluate", "evaluate.py",
         inputs=(Port("model"), Port("champion", optional=True), Port("holdout"), *SCHEMA,
                 Port("slices", TEXT), Port("train", optional=True), Port("time_column", TEXT, optional=True)),
         outputs=(Port("metrics_out"), Port("reference_out"))),
    Step("register", "register.py",
         inputs=(Port("model"), Port("metrics"), Port("train", optional=True), Port("name", TEXT),
                 Port("lineage", TEXT), Port("registry", TEXT, optional=True), Port("reference", optional=True)),
         outputs=(Port("registered"),)),
)

# Which earlier output feeds which later input: (step, input) <- (step, output).
WIRING: dict[tuple[str, str], tuple[str, str]] = {
    (TRAIN, "data"): ("prep", "out_train"),
    ("evaluate", "model"): (TRAIN, "model_out"),
    ("evaluate", "holdout"): ("prep", "out_holdout"),
    ("evaluate", "train"): ("prep", "out_train"),
    ("register", "model"): (TRAIN, "model_out"),
    ("register", "metrics"): ("evaluate", "metrics_out"),
    ("register", "train"): ("prep", "out_train"),
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
