/**
 * GET /api/exporters: every ITSM exporter's phase, lag and error counts (exporters.status.v1), asked of the exporter
 * service over NATS; 503 when no exporter service runs (none is configured: ORRERY_EXPORTERS_CONFIG).
 */
import { decode } from "../../../pipelines/codec.ts";
import { ExportersStatus } from "../../../pipelines/contracts/exporters.ts";
import type { Bus } from "../../shared/bus.ts";
import { HttpError, type Routes } from "../../shared/http.ts";

export function exporterRoutes(bus: Bus): Routes {
  return {
    "/api/exporters": {
      GET: async () => {
        try {
          const m = await bus.nc.request(bus.topo.subjects.exportersRpc, new Uint8Array(), { timeout: 3000 });
          return Response.json(decode(ExportersStatus, "exporters.status.v1", m.data));
        } catch (e) {
          throw new HttpError(503, `no exporter service answered (is ORRERY_EXPORTERS_CONFIG set?): ${e instanceof Error ? e.message : String(e)}`);
        }
      },
    },
  };
}
