def run(*a, **k): raise SystemExit('not yet built')
