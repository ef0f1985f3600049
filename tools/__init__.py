"""GitHub Actions and the checks CI runs: job summaries and PR comments, the workflow rules, `invoke dev.lint`."""
