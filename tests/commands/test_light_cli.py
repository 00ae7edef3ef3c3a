"""Loading a config and parsing the command line import no torch (nor open_clip, MLflow, Ray), so
``clip2point --help`` and a config error answer at once."""

import subprocess
import sys

HEAVY = ("torch", "open_clip", "mlflow", "ray", "pyarrow")

PROGRAM = """
import sys
import clip2point.config
from clip2point.cli import build_parser
from clip2point.commands.common import config_from_args
args = build_parser().parse_args(["zeroshot", "-o", "render.dilation=4"])
assert config_from_args(args).render.dilation == 4
print(",".join(name for name in {heavy!r} if name in sys.modules) or "none")
"""


def test_config_and_argument_parsing_import_no_torch():
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(heavy=HEAVY)], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "none"


def test_a_bad_key_is_reported_without_loading_a_model():
    program = (
        "import sys\nfrom clip2point.cli import main\ncode = main(['zeroshot', '-o', 'render.dilaton=2'])\n"
        f"print(code, [name for name in {HEAVY!r} if name in sys.modules])"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "2 []"
    assert "unknown config key 'render.dilaton'; allowed keys here: views, footprint" in run.stderr
