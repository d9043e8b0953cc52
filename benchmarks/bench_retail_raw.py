"""The issue's count baseline on the raw Online Retail file, with and without non-products.

The issue quotes "the customer's own purchase counts alone: 0.348" (NDCG@10,
all items) for the temporal split, measured with plain scripts on the raw
file. Our importer rejects the file's non-product lines (postage ``POST``,
``DOT``, manual entries ``M``, bank charges ...: 2,941 rows), so the same
baseline scores lower on our data. This script computes it straight from the
CSV with pandas, both ways, to show where the difference comes from:

- purchases: signed-in customers, invoices not starting with ``C``,
  quantity > 0;
- train before the cut-off, test = the next 30 days' purchases of customers
  and items known before it;
- score = the customer's purchase lines per item (+ 1e-3 x global
  popularity to break ties and fill short histories), NDCG@10 with binary
  relevance and IDCG over min(10, |test items|).

    python benchmarks/bench_retail_raw.py ../shared/data/online_retail/online_retail.csv.gz

``--with-charges OUT`` instead writes a copy of the file whose non-product
codes are renamed (``POST`` -> ``NPPOST`` ...) so that the importer takes them
as products: our models can then be trained and scored on the basis the
issue's reference figures were measured on.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import scipy.sparse as sp

_DISCOUNTS = 1.0 / np.log2(np.arange(2, 12))


def purchases(path: str, products_only: bool) -> pd.DataFrame:
    """Purchase lines of signed-in customers (optionally product codes only: start with a digit)."""
    raw = pd.read_csv(
        path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str}, encoding="latin-1"
    )
    raw["InvoiceDate"] = pd.to_datetime(raw["InvoiceDate"])
    rows = raw[raw["CustomerID"].notna() & ~raw["InvoiceNo"].str.startswith("C")]
    rows = rows[rows["Quantity"] > 0]
    if products_only:
        rows = rows[rows["StockCode"].str.match(r"^\d")]
    return rows


def ndcg_of_counts(rows: pd.DataFrame, cutoff: str, days: int, popularity_fill: bool) -> dict:
    """NDCG@10 of the own-counts baseline on the temporal split of ``rows``."""
    start = pd.Timestamp(cutoff)
    train = rows[rows["InvoiceDate"] < start]
    test = rows[
        (rows["InvoiceDate"] >= start) & (rows["InvoiceDate"] < start + pd.Timedelta(days=days))
    ]
    test = test[
        test["CustomerID"].isin(train["CustomerID"]) & test["StockCode"].isin(train["StockCode"])
    ]
    users = {u: i for i, u in enumerate(train["CustomerID"].unique())}
    items = {s: i for i, s in enumerate(train["StockCode"].unique())}
    counts = sp.csr_matrix(
        (
            np.ones(len(train)),
            (train["CustomerID"].map(users).to_numpy(), train["StockCode"].map(items).to_numpy()),
        ),
        shape=(len(users), len(items)),
    )
    popularity = np.asarray((counts > 0).sum(axis=0)).ravel()
    fill = 1e-3 * popularity / popularity.max() if popularity_fill else 0.0
    scores = []
    for user, bought in test.groupby("CustomerID")["StockCode"]:
        relevant = {items[s] for s in bought}
        row = counts[users[user]].toarray().ravel() + fill
        top = np.argsort(-row, kind="stable")[:10]
        dcg = sum(_DISCOUNTS[rank] for rank, item in enumerate(top) if item in relevant)
        scores.append(dcg / _DISCOUNTS[: min(10, len(relevant))].sum())
    return {"ndcg@10": round(float(np.mean(scores)), 4), "test_users": len(scores)}


def write_with_charges(path: str, out: str) -> int:
    """Copy ``path`` to ``out`` with the importer's non-product codes renamed to
    product-like ones (``NP`` + the code's letters and digits); returns how many lines."""
    from recsys.data.formats.online_retail import NON_PRODUCT_CODES, NON_PRODUCT_PREFIXES

    raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="latin-1")
    code = raw["StockCode"].str.upper()
    charge = code.isin(NON_PRODUCT_CODES) | code.str.startswith(NON_PRODUCT_PREFIXES)
    raw.loc[charge, "StockCode"] = "NP" + code[charge].str.replace(r"[^A-Z0-9]", "", regex=True)
    raw.to_csv(out, index=False, encoding="latin-1")
    return int(charge.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="online_retail.csv.gz")
    parser.add_argument("--cutoff", default="2011-11-09")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--with-charges", metavar="OUT", help="Write the renamed copy to OUT.")
    args = parser.parse_args()
    if args.with_charges:
        print(json.dumps({"renamed_lines": write_with_charges(args.csv, args.with_charges)}))
        return
    out = {}
    for products_only in (False, True):
        rows = purchases(args.csv, products_only)
        for fill in (False, True):
            key = f"{'products only' if products_only else 'all codes'}, popularity fill {fill}"
            out[key] = ndcg_of_counts(rows, args.cutoff, args.days, fill)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
