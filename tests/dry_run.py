"""Reading the jobs a Snakemake dry run plans (``-n``; with ``-p`` each job's shell command too)."""
import re


def _field(block: str, name: str) -> str:
    m = re.search(rf"^    {name}: (.*)$", block, re.M)
    return m.group(1) if m else ""


def _pairs(text: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in text.split(", ")) if text else {}


def planned_jobs(output: str) -> list[dict]:
    """Each job of a dry run: rule, wildcards and resources (name -> value), input and output (paths),
    shell (the command, with -p; else empty)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output)[1:]:
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        jobs.append({"rule": re.match(r"(?:local)?rule (\w+):", block).group(1),
                     "wildcards": _pairs(_field(block, "wildcards")), "resources": _pairs(_field(block, "resources")),
                     "input": [p for p in _field(block, "input").split(", ") if p],
                     "output": [p for p in _field(block, "output").split(", ") if p],
                     "shell": shell.group(1) if shell else ""})
    return jobs
