"""The decision handlers: request body bytes in, answer bytes (200, JSON) or an error response
out. The edge middleware calls them directly for the decision POSTs (no routing, no dependency
solving: about half the framework cost of a single report); the documented routes call the same
functions. Every decision-path failure is mapped to an answer in one place (``_failure``)."""

from __future__ import annotations

import json
import logging

from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from controller.cells import WindowConflict, is_store_error
from controller.engine import ReportError
from controller.kpm import KpmError, KpmReport, rrm_policy_ratio_list, to_kpi_report
from controller.parts import Parts
from controller.schemas import (
    BATCH_ADAPTER,
    COLUMNAR_ADAPTER,
    ColumnarDict,
    ColumnError,
    columns,
    columns_from_columnar,
    fast_batch_columns,
    fast_report,
)
from slicetwin.core.schemas import KPIReport
from slicetwin.platform.http import error_response, validation_response

log = logging.getLogger("slicetwin.controller")

Answer = bytes | Response


class DecisionHandlers:
    def __init__(self, parts: Parts):
        self.engine, self.codec, self.s = parts.engine, parts.codec, parts.settings
        self.errors = parts.metrics.errors

    def by_path(self) -> dict:
        """The edge's direct dispatch: path -> handler of the body bytes."""
        return {"/v1/reports": self.report, "/v1/reports:batch": self.batch,
                "/v1/reports:columns": self.columns, "/v1/e2/kpm": self.kpm}

    # ------------------------------------------------------------------ the four forms
    def report(self, raw: bytes) -> Answer:
        rep = fast_report(raw)  # None: not the canonical form, pydantic decides
        if rep is None:
            try:
                rep = KPIReport.model_validate_json(raw)
            except ValidationError as e:
                return self._bad_body(e)
        try:
            body, _ = self.engine.decide(rep)
        except Exception as e:
            return self._failure(e, ["body", "window"])
        return body.encode()

    def batch(self, raw: bytes) -> Answer:
        try:
            cols = fast_batch_columns(raw)  # None: not the canonical form, take the general path
            if cols is None:
                try:
                    reports = BATCH_ADAPTER.validate_json(raw)["reports"]
                except ValidationError as e:
                    return self._bad_body(e)
                if len(reports) > self.s.max_batch:
                    return self._too_many(len(reports), "reports")
                cols = columns(reports)
            elif len(cols) > self.s.max_batch:
                return self._too_many(len(cols), "reports")
            parts = self.engine.decide_batch(cols)
        except Exception as e:
            return self._failure(e, lambda i: ["body", "reports", i, "window"])
        return ('{"decisions":[' + ",".join(parts) + "]}").encode()

    def columns(self, raw: bytes) -> Answer:
        try:
            req: ColumnarDict = COLUMNAR_ADAPTER.validate_json(raw)
        except ValidationError as e:
            return self._bad_body(e)
        if len(req["cell_id"]) > self.s.max_batch:
            return self._too_many(len(req["cell_id"]), "cell_id")
        try:
            out = self.engine.decide_batch(columns_from_columnar(req), columns=True)
        except Exception as e:
            return self._failure(e, lambda i: ["body", "window", i])
        return json.dumps(out, separators=(",", ":")).encode()

    def kpm(self, raw: bytes) -> Answer:
        try:
            kpm = KpmReport.model_validate_json(raw)
        except ValidationError as e:
            return self._bad_body(e)
        try:
            rep = to_kpi_report(kpm, self.codec)
        except KpmError as e:
            self.errors.labels("kpm").inc()
            return error_response(422, "kpm", str(e), e.loc)
        except ValidationError as e:
            return self._bad_body(e, ("body", "measurements"))
        try:
            _, d = self.engine.decide(rep)
        except Exception as e:
            return self._failure(e, ["body", "window"])
        units = self.codec.decode(d["action"])
        out = {"cell_id": rep.cell_id, "window": rep.window, "decision_id": d["decision_id"],
               "policy_version": d["version"], "fallback": d["fallback"],
               "explored": d["explored"],
               "rrmPolicyRatioList": rrm_policy_ratio_list(units, self.codec, self.s.plmn_id,
                                                           self.s.rrm_max_headroom_pct)}
        if d["degraded"]:
            out["degraded"] = d["degraded"]
        return JSONResponse(out)

    # ------------------------------------------------------------------ failures
    def _failure(self, e: Exception, window_loc) -> Response:
        """The one mapping of decision-path failures to answers; anything else propagates.
        ``window_loc``: where a conflicting window sits (a list, or a function of its index)."""
        if isinstance(e, WindowConflict):
            self.errors.labels(e.kind).inc()
            loc = window_loc(e.index) if callable(window_loc) else window_loc
            return error_response(e.status, e.kind, str(e), loc)
        if isinstance(e, ColumnError):
            e = ReportError(e.loc, str(e))
        if isinstance(e, ReportError):
            self.errors.labels(e.kind).inc()
            where = ".".join(str(p) for p in e.loc[1:])
            return error_response(422, e.kind, f"{where}: {e}" if where else str(e), e.loc)
        if is_store_error(e):
            self.errors.labels("cell_store").inc()
            log.warning("cell store failed: %s", e)
            return error_response(503, "cell_store", f"cell memory unavailable: {e}")
        raise e

    def _bad_body(self, e: ValidationError, prefix=("body",)) -> JSONResponse:
        self.errors.labels("validation").inc()
        return validation_response(e.errors(include_url=False), prefix)

    def _too_many(self, n: int, loc: str) -> JSONResponse:
        self.errors.labels("too_large").inc()
        what = "cells" if loc == "cell_id" else "reports"
        return error_response(413, "too_large", f"{n} {what} exceed max_batch={self.s.max_batch}",
                              ["body", loc])
