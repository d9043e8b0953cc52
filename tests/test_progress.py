"""The elapsed-time line of steps that cannot count their work (a model's fit)."""

from __future__ import annotations

import time

from recsys.progress import elapsed


def test_elapsed_is_refreshed_on_stderr_while_the_step_runs(capsys):
    with elapsed("fit slow", interval_s=0.05):
        time.sleep(0.5)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("fit slow: ") >= 4  # redrawn while the step ran, not only at its end
    assert "elapsed" in err

    with elapsed("fit quiet", enabled=False):
        pass
    assert capsys.readouterr() == ("", "")
