import subprocess
import sys


def test_core_import_pulls_in_no_front_end_library():
    code = ("import sys, exburn_nb; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'plotly', 'IPython')]; "
            "print(bad); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
