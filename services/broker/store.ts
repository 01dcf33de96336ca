/**
 * The broker's state: instances and bindings in a JetStream KV bucket (<PREFIX>_BROKER, @nats-io/kv), so a broker
 * restarted mid-operation finds every operation where it left it. Every write is a compare-and-set on the key's
 * revision: two requests on one instance (or a request and the operation runner) cannot both win, and the loser
 * reads again and decides again. Keys are base64url of the platform's ids (any string the platform chose is a valid
 * KV key then).
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { z } from "zod";
import { BindingRecord, InstanceRecord } from "../../pipelines/contracts/broker.ts";
import type { Bus } from "../shared/bus.ts";
import { jsApiCode } from "../shared/bus.ts";
import { TransientError } from "../shared/errors.ts";

export interface Versioned<T> {
  value: T;
  revision: number;
}

/** Another writer changed the key since it was read. */
export class StaleWriteError extends Error {
  override readonly name = "StaleWriteError";
}

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64url");
const WRONG_LAST_SEQUENCE = 10071;

export class BrokerStore {
  private constructor(private readonly kv: KV) {}

  static async open(bus: Bus): Promise<BrokerStore> {
    const kv = await new Kvm(bus.js).create(bus.topo.buckets.broker, { history: 1 });
    return new BrokerStore(kv);
  }

  static instanceKey = (instanceId: string) => `i.${b64(instanceId)}`;
  static bindingKey = (instanceId: string, bindingId: string) => `b.${b64(instanceId)}.${b64(bindingId)}`;

  private async read<S extends z.ZodType>(schema: S, key: string): Promise<Versioned<z.output<S>> | null> {
    let e;
    try {
      e = await this.kv.get(key);
    } catch (err) {
      throw new TransientError(`broker store unavailable: ${(err as Error).message}`, undefined, { cause: err });
    }
    if (!e || e.operation !== "PUT" || e.length === 0) return null;
    return { value: schema.parse(e.json()), revision: e.revision };
  }

  /** Writes `value` if the key is still at `revision` (null: the key must not exist); StaleWriteError otherwise. */
  private async write(key: string, value: unknown, revision: number | null): Promise<number> {
    const data = JSON.stringify(value);
    try {
      return revision === null ? await this.kv.create(key, data) : await this.kv.update(key, data, revision);
    } catch (err) {
      if (jsApiCode(err) === WRONG_LAST_SEQUENCE || /wrong last sequence|key exists/i.test(String((err as Error).message))) throw new StaleWriteError(key, { cause: err });
      if (jsApiCode(err) !== undefined) throw err;
      throw new TransientError(`broker store unavailable: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  instance(id: string) {
    return this.read(InstanceRecord, BrokerStore.instanceKey(id));
  }
  putInstance(r: InstanceRecord, revision: number | null) {
    return this.write(BrokerStore.instanceKey(r.instance_id), InstanceRecord.parse(r), revision);
  }
  binding(instanceId: string, bindingId: string) {
    return this.read(BindingRecord, BrokerStore.bindingKey(instanceId, bindingId));
  }
  putBinding(r: BindingRecord, revision: number | null) {
    return this.write(BrokerStore.bindingKey(r.instance_id, r.binding_id), BindingRecord.parse(r), revision);
  }

  private async *scan<S extends z.ZodType>(schema: S, filter: string): AsyncIterable<Versioned<z.output<S>>> {
    const keys: string[] = [];
    for await (const k of await this.kv.keys(filter)) keys.push(k);
    for (const k of keys) {
      const r = await this.read(schema, k);
      if (r) yield r;
    }
  }
  instances() {
    return this.scan(InstanceRecord, "i.*");
  }
  /** every binding, or an instance's */
  bindings(instanceId?: string) {
    return this.scan(BindingRecord, instanceId === undefined ? "b.*.*" : `b.${b64(instanceId)}.*`);
  }
}
