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


def test_an_online_retail_import_shows_it_is_reading(tmp_path, capsys):
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore

    src = tmp_path / "retail.csv"
    src.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    )
    out = import_source(DataStore(tmp_path / "data"), "online-retail", src)
    assert out.accepted == 1
    assert "read retail.csv: " in capsys.readouterr().err  # one batch: an elapsed line
    import_source(DataStore(tmp_path / "quiet"), "online-retail", src, progress=False)
    assert "read retail.csv" not in capsys.readouterr().err
