/**
 * The broker's state: instances and bindings in a JetStream KV bucket (<PREFIX>_BROKER, @nats-io/kv), so a broker
 * restarted mid-operation finds every operation where it left it. Every write is a compare-and-set on the key's
 * revision: two requests on one instance (or a request and the operation runner) cannot both win, and the loser
 * reads again and decides again. Keys are base64url of the platform's ids (any string the platform chose is a valid
 * KV key then). A binding's credentials (the NATS seed, the kiosk URL) are stored sealed (seal.ts): the KV value
 * holds `sealed`, never `credentials`, and reads open it again.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { z } from "zod";
import { BindingCredentials, BindingRecord, InstanceRecord } from "../../pipelines/contracts/broker.ts";
import type { Bus } from "../shared/bus.ts";
import { jsApiCode } from "../shared/bus.ts";
import { TransientError } from "../shared/errors.ts";
import { Sealed, SealedSecretError, type SecretBox } from "./seal.ts";

/** A binding as the KV holds it: its credentials sealed. */
const StoredBinding = BindingRecord.extend({ sealed: Sealed.optional() });

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
  private constructor(
    private readonly kv: KV,
    private readonly box: SecretBox,
  ) {}

  /** `box` seals and opens binding credentials (secretBox(parseSecretKey(ORRERY_BROKER_SECRET_KEY))). */
  static async open(bus: Bus, box: SecretBox): Promise<BrokerStore> {
    const kv = await new Kvm(bus.js).create(bus.topo.buckets.broker, { history: 1 });
    return new BrokerStore(kv, box);
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
  /** throws SealedSecretError when its credentials were sealed under another key (or altered) */
  async binding(instanceId: string, bindingId: string): Promise<Versioned<BindingRecord> | null> {
    const key = BrokerStore.bindingKey(instanceId, bindingId);
    const r = await this.read(StoredBinding, key);
    return r && { value: this.unseal(key, r.value), revision: r.revision };
  }
  putBinding(r: BindingRecord, revision: number | null) {
    const key = BrokerStore.bindingKey(r.instance_id, r.binding_id);
    const { credentials, ...rest } = BindingRecord.parse(r);
    return this.write(key, credentials ? { ...rest, sealed: this.box.seal(JSON.stringify(credentials), key) } : rest, revision);
  }

  private unseal(key: string, v: z.output<typeof StoredBinding>): BindingRecord {
    const { sealed, ...rest } = v;
    // a record written before credentials were sealed carries them in the clear (sealLegacy rewrites those)
    if (!sealed) return rest;
    return { ...rest, credentials: BindingCredentials.parse(JSON.parse(this.box.open(sealed, key))) };
  }

  /**
   * Throws SealedSecretError (wrong_key) when a binding was sealed under another key than this store's: a broker
   * started with the wrong ORRERY_BROKER_SECRET_KEY stops at once, saying so, rather than fail binding by binding.
   */
  async checkKey(): Promise<void> {
    const other = new Map<string, number>();
    for await (const b of this.scan(StoredBinding, "b.*.*")) if (b.value.sealed && b.value.sealed.kid !== this.box.kid) other.set(b.value.sealed.kid, (other.get(b.value.sealed.kid) ?? 0) + 1);
    if (other.size) throw new SealedSecretError("wrong_key", `${[...other].map(([k, n]) => `${n} binding(s) sealed with broker key ${k}`).join(", ")}, but ORRERY_BROKER_SECRET_KEY is key ${this.box.kid}: start the broker with the key it sealed its bindings with`);
  }

  /** Rewrites bindings whose credentials are still in the clear (written by a broker before sealing); returns how many. */
  async sealLegacy(): Promise<number> {
    let n = 0;
    for await (const b of this.scan(StoredBinding, "b.*.*")) {
      if (!b.value.credentials || b.value.sealed) continue;
      try {
        await this.putBinding(b.value, b.revision);
        n++;
      } catch (e) {
        // changed meanwhile: whoever changed it wrote it sealed
        if (!(e instanceof StaleWriteError)) throw e;
      }
    }
    return n;
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
  async *bindings(instanceId?: string): AsyncIterable<Versioned<BindingRecord>> {
    for await (const r of this.scan(StoredBinding, instanceId === undefined ? "b.*.*" : `b.${b64(instanceId)}.*`)) {
      yield { value: this.unseal(BrokerStore.bindingKey(r.value.instance_id, r.value.binding_id), r.value), revision: r.revision };
    }
  }
}
