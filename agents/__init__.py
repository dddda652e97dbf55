"""nla_audit.agents: an LLM auditor with NLA, SAE and black-box tools over a target model.

``tools.py`` holds the tools, written once as typed async functions over an ``AuditSession``;
``graph.py`` wraps them for langgraph (the auditor), ``inspect_tools.py`` for inspect-ai. Heavy deps
(langgraph, langchain, anthropic, inspect) are imported only by the modules that need them.
"""

from nla_audit.agents.session import AuditConfig, AuditSession
from nla_audit.agents.tools import AuditToolError, audit_tools

__all__ = ["AuditConfig", "AuditSession", "AuditToolError", "audit_tools"]
