"""tqstar.audit: the evidence of each answer, kept and shown — the audit log of ``tqstar serve``, the roles'
identities it records, and the token inspector (``tqstar trace view``). Names load on first use."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["Answer", "AUDIT_FILE", "trace_digest"], "protocol"),
    **dict.fromkeys(["AuditLog", "audit_files", "read_audit"], "log"),
    **dict.fromkeys(["roles_identity", "model_identity"], "identity"),
    **dict.fromkeys(["read_answers", "select"], "read"),
    **dict.fromkeys(["page_html", "write_page"], "page"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
