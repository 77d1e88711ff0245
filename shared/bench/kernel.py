def run(**kw): raise SystemExit("not yet")
