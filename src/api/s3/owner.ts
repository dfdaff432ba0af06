// How S3 names an account as an owner.
import { createHmac } from "node:crypto";

/** The canonical user id S3 reports for an account: stable, 64 hex digits. */
export const canonicalUserId = (accountId: string) => createHmac("sha256", "kiln").update(accountId).digest("hex");

export const ownerOf = (accountId: string) => ({ ID: canonicalUserId(accountId), DisplayName: accountId });
