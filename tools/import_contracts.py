"""A custom import-linter contract: modules that must not import given submodules of an
external package (import-linter's own ``forbidden`` contract sees external packages only
as a whole, e.g. ``fiftyone``, never ``fiftyone.operators``)."""

from __future__ import annotations

import re

from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class ForbiddenExternalSubmodulesContract(Contract):
    """``source_modules`` (and their descendants) import none of ``forbidden_modules``,
    dotted submodules of an external package (``fiftyone.operators``)."""

    type_name = "forbidden_external_submodules"

    source_modules = fields.ListField(subfield=fields.StringField())
    forbidden_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        violations = []
        sources = [str(s) for s in self.source_modules]  # type: ignore[attr-defined]
        for forbidden in (str(f) for f in self.forbidden_modules):  # type: ignore[attr-defined]
            root, _, sub = forbidden.partition(".")
            if root not in graph.modules:
                continue
            # "import root.sub", "from root.sub import x", "from root import sub"
            pattern = re.compile(rf"(\bimport\s+{re.escape(forbidden)}\b|\bfrom\s+{re.escape(forbidden)}\b"
                                 rf"|\bfrom\s+{re.escape(root)}\s+import\s+.*\b{re.escape(sub)}\b)")
            for importer in sorted(graph.find_modules_that_directly_import(root)):
                if not any(importer == s or importer.startswith(s + ".") for s in sources):
                    continue
                for d in graph.get_import_details(importer=importer, imported=root):
                    if pattern.search(d["line_contents"]):
                        violations.append((importer, d["line_number"], d["line_contents"]))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        from importlinter.application import output  # deferred: only when a contract breaks

        for importer, line, text in check.metadata["violations"]:
            output.print_error(f"{importer}:{line}: {text}", bold=False)
