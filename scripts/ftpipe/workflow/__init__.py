"""What only the workflow side uses (rules/common.smk): experiments and stage keys, the config check.
Stages never import it."""
