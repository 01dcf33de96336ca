/**
 * The directory port: who the people are (users, groups, nested membership) and whether a password is theirs. The
 * identity service depends on this interface only; main.ts picks the adapter (ldap.ts for LDAP and Active Directory).
 */
export { TransientError } from "../../shared/errors.ts";

export interface DirectoryUser {
  /** objectGUID (AD) or entryUUID (LDAP): stable across renames and moves */
  id: string;
  /** sAMAccountName (AD) or uid (LDAP) */
  login: string;
  upn?: string;
  mail?: string;
  displayName?: string;
  dn: string;
  /** the manager's DN */
  manager?: string;
  /** DNs of every group the user is in, nested membership resolved */
  groups: string[];
  disabled: boolean;
}

export interface DirectoryGroup {
  id: string;
  dn: string;
  name: string;
  /** ids of the users in the group, directly or through nested groups */
  members: string[];
}

export interface DirectorySnapshot {
  /** when the snapshot was taken (epoch ms) */
  at: number;
  users: DirectoryUser[];
  groups: DirectoryGroup[];
}

export interface DirectoryPort {
  /**
   * Search-then-bind: find the user by login (filter value escaped), bind as them; null when unknown, disabled or the
   * password is wrong (never says which). Throws a TransientError when the directory is unreachable.
   */
  authenticate(login: string, password: string): Promise<DirectoryUser | null>;
  /** A complete snapshot (paged search) or a thrown error: never a partial result. */
  snapshot(): Promise<DirectorySnapshot>;
  close(): Promise<void>;
}
