#!/usr/bin/env python3
"""Reads net2net-eval energy --format csv with CodeCarbon's own code (run by the python of
scripts/setup_codecarbon.sh). Usage: codecarbon_check.py FILE.csv -> JSON:
  columns_match    the file's header is the set of CodeCarbon's EmissionsData fields
  missing, extra   columns CodeCarbon has that the file lacks, and the reverse
  rows             rows pandas reads; each becomes an EmissionsData (so its types fit)
  energy_consumed  the first row's kWh as CodeCarbon reads it
  appended         CodeCarbon's FileOutput appended a row of its own to the file without
                   backing it up (what it does with a file whose columns it does not accept)
  rows_after       rows pandas reads after that append
"""
import dataclasses
import glob
import json
import math
import os
import sys

import pandas as pd
from codecarbon.output_methods.emissions_data import EmissionsData
from codecarbon.output_methods.file import FileOutput

path = sys.argv[1]
fields = [f.name for f in dataclasses.fields(EmissionsData)]
df = pd.read_csv(path)
out = {"columns_match": sorted(df.columns) == sorted(fields),
       "missing": sorted(set(fields) - set(df.columns)), "extra": sorted(set(df.columns) - set(fields)),
       "rows": len(df)}
records = []
for row in df.to_dict("records"):
    row = {k: v for k, v in row.items() if k in fields and not (isinstance(v, float) and math.isnan(v))}
    missing = [f.name for f in dataclasses.fields(EmissionsData)
               if f.name not in row and f.default is dataclasses.MISSING]
    for name in missing:  # empty cells (unknown location): what CodeCarbon writes when it does not know
        row[name] = ""
    records.append(EmissionsData(**row))
out["energy_consumed"] = float(records[0].energy_consumed) if records else None
before = set(glob.glob(path + "*"))
writer = FileOutput(os.path.basename(path), os.path.dirname(os.path.abspath(path)), on_csv_write="append")
writer.out(records[0], None)
out["appended"] = set(glob.glob(path + "*")) == before and writer.has_valid_headers(records[0])
out["rows_after"] = len(pd.read_csv(path))
print(json.dumps(out))
