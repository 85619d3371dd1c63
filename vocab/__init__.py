"""The shared vocabulary of docksim: scenarios and traces (pure data, no engine, no simpy)."""
