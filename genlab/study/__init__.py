"""`genlab study`: families x seeds under one budget and one evaluation protocol, and a report that judges
the textbook claims about VAEs, GANs and VAE-GANs with numbers. plan.py trains (through `genlab train -m`),
measure.py evaluates, verdict.py judges, render.py writes the report."""
