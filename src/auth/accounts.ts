// Who may call Kiln: access keys, their secrets and the 12-digit account each one acts for.
import { readFileSync } from "node:fs";

export interface Credential {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly accountId: string;
}

export const DEFAULT_ACCOUNT_ID = "000000000000";
const DEFAULT_SECRET = "test";
const ACCOUNT_ID = /^[0-9]{12}$/;

export interface AccountDirectory {
  lookup(accessKeyId: string): Credential | undefined;
  /** The account that unsigned requests act for, when the operator allows them. */
  readonly defaultAccountId: string;
}

/**
 * With no configured list: `test`/`test` is account 000000000000, and any 12-digit access key id
 * with secret `test` is that account, so multi-account tests work out of the box.
 */
export function defaultAccounts(): AccountDirectory {
  return {
    defaultAccountId: DEFAULT_ACCOUNT_ID,
    lookup(accessKeyId) {
      if (accessKeyId === "test") return { accessKeyId, secretAccessKey: DEFAULT_SECRET, accountId: DEFAULT_ACCOUNT_ID };
      if (ACCOUNT_ID.test(accessKeyId)) return { accessKeyId, secretAccessKey: DEFAULT_SECRET, accountId: accessKeyId };
      return undefined;
    },
  };
}

/** A configured list replaces the defaults entirely; the first account is the default one. */
export function configuredAccounts(credentials: readonly Credential[]): AccountDirectory {
  if (credentials.length === 0) throw new Error("the configured account list is empty");
  const byKey = new Map<string, Credential>();
  for (const credential of credentials) {
    if (!ACCOUNT_ID.test(credential.accountId)) throw new Error(`account id ${credential.accountId} is not 12 digits`);
    if (!credential.accessKeyId || !credential.secretAccessKey) throw new Error(`account ${credential.accountId} needs an accessKeyId and a secretAccessKey`);
    if (byKey.has(credential.accessKeyId)) throw new Error(`access key ${credential.accessKeyId} is configured twice`);
    byKey.set(credential.accessKeyId, credential);
  }
  return { defaultAccountId: credentials[0]!.accountId, lookup: (accessKeyId) => byKey.get(accessKeyId) };
}

/** `{"accounts": [{"accountId", "accessKeyId", "secretAccessKey"}]}` */
export function readAccountsFile(path: string): Credential[] {
  const parsed = JSON.parse(readFileSync(path, "utf8")) as { accounts?: Credential[] };
  if (!Array.isArray(parsed.accounts)) throw new Error(`${path} must hold {"accounts": [...]}`);
  return parsed.accounts;
}

/** `accountId:accessKeyId:secretAccessKey` entries separated by commas (KILN_ACCOUNTS). */
export function parseAccountsList(text: string): Credential[] {
  return text
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      const [accountId, accessKeyId, ...secret] = entry.split(":");
      if (!accountId || !accessKeyId || secret.length === 0) throw new Error(`"${entry}" is not accountId:accessKeyId:secretAccessKey`);
      return { accountId, accessKeyId, secretAccessKey: secret.join(":") };
    });
}
