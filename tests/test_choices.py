"""The CLI's choices and the implementing modules name the same things (galaxai.choices)."""
from galaxai import choices


def test_choices_match_the_registries():
    from galaxai.models.morphology import LAYOUTS
    from galaxai.workflows import COMPARED_METHODS

    assert tuple(COMPARED_METHODS) == choices.COMPARED_METHODS
    assert set(LAYOUTS) == set(choices.LAYOUTS)


def test_choices_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, galaxai.choices, galaxai.cli; "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
