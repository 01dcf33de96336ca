/**
 * The directory's configuration: one schema for what the LDAP adapter needs (`LdapConfig`), and the environment keys
 * main.ts parses to build it (`DirectoryKeys` → `ldapConfigFromEnv`). No ORRERY_LDAP_URL means no directory: login is
 * then the local admin only (the identity service decides that).
 */
import { FilterParser } from "ldapts";
import { z } from "zod";
import { ConfigError } from "../../shared/config.ts";

export const Flavour = z.enum(["ad", "ldap"]);
export type Flavour = z.infer<typeof Flavour>;

/**
 * How nested group membership is resolved at login: `in-chain` asks the server (Active Directory's
 * LDAP_MATCHING_RULE_IN_CHAIN, one search), `client` walks the group graph one level per search (any LDAP server),
 * `auto` uses in-chain when the server's root DSE says it is Active Directory. A snapshot always resolves nesting
 * itself from the groups it read (it has them all already).
 */
export const NestedMode = z.enum(["auto", "in-chain", "client"]);
export type NestedMode = z.infer<typeof NestedMode>;

/** An RFC 4515 filter, checked when the configuration is read rather than at the first login. */
const LdapFilter = z.string().min(1).refine(
  (s) => {
    try {
      FilterParser.parseString(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: "not an LDAP filter (RFC 4515), e.g. (objectClass=user)" },
);
const Dn = z.string().trim().min(1, "a DN, e.g. ou=people,dc=example,dc=com");
const LdapUrl = z
  .string()
  .trim()
  .regex(/^ldaps?:\/\/[^/\s]+\/?$/i, "ldap://host[:port] or ldaps://host[:port]");

export const LdapConfig = z
  .object({
    url: LdapUrl,
    /** the service account that searches (users, groups, the snapshot); empty for an anonymous search */
    bindDN: z.string().default(""),
    bindPassword: z.string().default(""),
    userBase: Dn,
    groupBase: Dn,
    flavour: Flavour.default("ad"),
    /** which entries are users and groups; defaults depend on the flavour (see `defaultsFor`) */
    userFilter: LdapFilter.optional(),
    groupFilter: LdapFilter.optional(),
    /** attributes a login may match (any of them, exactly one entry); defaults depend on the flavour */
    loginAttributes: z.array(z.string().regex(/^[a-zA-Z][a-zA-Z0-9-]*$/, "an attribute name")).min(1).optional(),
    /**
     * Plain LDAP: the users this filter matches are disabled (default `(pwdAccountLockedTime=*)`, the password policy
     * overlay's lock). Active Directory: userAccountControl's ACCOUNTDISABLE bit is always checked; a filter given here
     * disables the users it matches too.
     */
    disabledFilter: LdapFilter.optional(),
    nested: NestedMode.default("auto"),
    /** upgrade an ldap:// connection with StartTLS before anything is sent (refused: the operation fails) */
    startTLS: z.boolean().default(false),
    /** PEM file of the CA(s) that signed the server's certificate (ldaps:// and StartTLS) */
    caFile: z.string().min(1).optional(),
    /** verify the server's certificate and name; off only for a lab */
    tlsVerify: z.boolean().default(true),
    /** per LDAP operation (each page of a paged search is one); a directory that stops answering fails after this */
    timeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    connectTimeoutMs: z.number().int().min(100).max(120_000).default(5_000),
    /** entries per page of a paged search; keep it under the server's size limit (AD's MaxPageSize is 1000) */
    pageSize: z.number().int().min(1).max(10_000).default(500),
  })
  .refine((c) => !(c.startTLS && c.url.toLowerCase().startsWith("ldaps:")), {
    message: "StartTLS is for ldap:// URLs; ldaps:// is already TLS",
    path: ["startTLS"],
  })
  .refine((c) => c.bindDN === "" || c.bindPassword !== "", {
    message: "a bind DN needs its password (an empty password is an unauthenticated bind)",
    path: ["bindPassword"],
  });
export type LdapConfig = z.output<typeof LdapConfig>;
export type LdapConfigInput = z.input<typeof LdapConfig>;

/** What a flavour means when the configuration does not say. */
export function defaultsFor(flavour: Flavour) {
  return flavour === "ad"
    ? {
        userFilter: "(&(objectCategory=person)(objectClass=user))",
        groupFilter: "(objectClass=group)",
        loginAttributes: ["sAMAccountName", "userPrincipalName"],
        disabledFilter: undefined as string | undefined,
      }
    : {
        userFilter: "(objectClass=inetOrgPerson)",
        groupFilter: "(|(objectClass=groupOfNames)(objectClass=group))",
        loginAttributes: ["uid"],
        disabledFilter: "(pwdAccountLockedTime=*)" as string | undefined,
      };
}

const Bool01 = z.enum(["0", "1"]);
const Int = z.coerce.number().int();

/** The environment keys of the directory, for main.ts: `parseEnv(z.object({ ...DirectoryKeys, … }), process.env)`. */
export const DirectoryKeys = {
  /** ldap://host:389 or ldaps://host:636; unset = no directory */
  ORRERY_LDAP_URL: LdapUrl.optional(),
  ORRERY_LDAP_BIND_DN: z.string().default(""),
  ORRERY_LDAP_BIND_PASSWORD: z.string().default(""),
  ORRERY_LDAP_USER_BASE: z.string().optional(),
  /** defaults to the user base */
  ORRERY_LDAP_GROUP_BASE: z.string().optional(),
  ORRERY_LDAP_FLAVOUR: Flavour.default("ad"),
  ORRERY_LDAP_USER_FILTER: LdapFilter.optional(),
  ORRERY_LDAP_GROUP_FILTER: LdapFilter.optional(),
  /** comma-separated attribute names, e.g. sAMAccountName,userPrincipalName */
  ORRERY_LDAP_LOGIN_ATTRIBUTES: z.string().optional(),
  ORRERY_LDAP_DISABLED_FILTER: LdapFilter.optional(),
  ORRERY_LDAP_NESTED: NestedMode.default("auto"),
  ORRERY_LDAP_STARTTLS: Bool01.default("0"),
  ORRERY_LDAP_CA_FILE: z.string().min(1).optional(),
  ORRERY_LDAP_TLS_VERIFY: Bool01.default("1"),
  ORRERY_LDAP_TIMEOUT_MS: Int.min(100).max(600_000).default(10_000),
  ORRERY_LDAP_CONNECT_TIMEOUT_MS: Int.min(100).max(120_000).default(5_000),
  ORRERY_LDAP_PAGE_SIZE: Int.min(1).max(10_000).default(500),
  /** how often the directory is synced; 0 = only on demand */
  ORRERY_LDAP_SYNC_INTERVAL_S: Int.min(0).max(7 * 86_400).default(900),
};
export type DirectoryEnv = z.output<z.ZodObject<typeof DirectoryKeys>>;

/**
 * The adapter's configuration from the parsed keys, or null when ORRERY_LDAP_URL is unset. Throws a
 * ConfigError naming the key when the URL is set but the rest does not make a configuration.
 */
export function ldapConfigFromEnv(env: DirectoryEnv): { config: LdapConfig; syncIntervalMs: number } | null {
  if (!env.ORRERY_LDAP_URL) return null;
  if (!env.ORRERY_LDAP_USER_BASE) throw new ConfigError("ORRERY_LDAP_USER_BASE: required when ORRERY_LDAP_URL is set (the DN users are searched under)");
  const keyOf: Record<string, string> = {
    url: "ORRERY_LDAP_URL",
    bindDN: "ORRERY_LDAP_BIND_DN",
    bindPassword: "ORRERY_LDAP_BIND_PASSWORD",
    userBase: "ORRERY_LDAP_USER_BASE",
    groupBase: "ORRERY_LDAP_GROUP_BASE",
    loginAttributes: "ORRERY_LDAP_LOGIN_ATTRIBUTES",
    startTLS: "ORRERY_LDAP_STARTTLS",
  };
  const keyName = (field: string) => keyOf[field] ?? `ORRERY_LDAP_${field.replace(/[A-Z]/g, (m) => `_${m}`).toUpperCase()}`;
  const input: LdapConfigInput = {
    url: env.ORRERY_LDAP_URL,
    bindDN: env.ORRERY_LDAP_BIND_DN,
    bindPassword: env.ORRERY_LDAP_BIND_PASSWORD,
    userBase: env.ORRERY_LDAP_USER_BASE,
    groupBase: env.ORRERY_LDAP_GROUP_BASE ?? env.ORRERY_LDAP_USER_BASE,
    flavour: env.ORRERY_LDAP_FLAVOUR,
    userFilter: env.ORRERY_LDAP_USER_FILTER,
    groupFilter: env.ORRERY_LDAP_GROUP_FILTER,
    loginAttributes: env.ORRERY_LDAP_LOGIN_ATTRIBUTES?.split(",").map((s) => s.trim()).filter(Boolean),
    disabledFilter: env.ORRERY_LDAP_DISABLED_FILTER,
    nested: env.ORRERY_LDAP_NESTED,
    startTLS: env.ORRERY_LDAP_STARTTLS === "1",
    caFile: env.ORRERY_LDAP_CA_FILE,
    tlsVerify: env.ORRERY_LDAP_TLS_VERIFY === "1",
    timeoutMs: env.ORRERY_LDAP_TIMEOUT_MS,
    connectTimeoutMs: env.ORRERY_LDAP_CONNECT_TIMEOUT_MS,
    pageSize: env.ORRERY_LDAP_PAGE_SIZE,
  };
  const r = LdapConfig.safeParse(input);
  if (!r.success) {
    // never echo the values: one of them is a password
    const msg = r.error.issues.map((i) => `${keyName(String(i.path[0]))}: ${i.message}`).join("; ");
    throw new ConfigError(`invalid directory configuration: ${msg}`);
  }
  return { config: r.data, syncIntervalMs: env.ORRERY_LDAP_SYNC_INTERVAL_S * 1000 };
}
