"""nla_audit.agents: LLM auditor tools and graph (next milestone)."""
