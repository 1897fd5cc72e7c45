"""Stage 1b: pivotal-token search (prefix, branching) and the Error-Localization dataset."""
