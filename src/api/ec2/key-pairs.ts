// Key pairs: CreateKeyPair (real RSA or ED25519 keys, PEM or PPK), ImportKeyPair, DescribeKeyPairs
// and DeleteKeyPair. Kiln keeps the public key and the fingerprint; the private key is returned
// once and never stored.
import type {
  CreateKeyPairRequest,
  DeleteKeyPairRequest,
  DescribeKeyPairsRequest,
  DescribeKeyPairsResult,
  ImportKeyPairRequest,
  KeyPair,
  KeyPairInfo,
} from "@aws-sdk/client-ec2";
import { newId, requestedIds } from "../../domain/ids.js";
import { generateKeyPair, importPublicKey } from "../../domain/ssh-keys.js";
import { ApiError } from "../../protocol/errors.js";
import { deleteKeyPair, insertKeyPair, listKeyPairs, type KeyPairRow } from "../../store/meta/key-pairs.js";
import { putTags } from "../../store/meta/tags.js";
import type { ActionContext, ActionTable } from "./action.js";
import { keyPairNotFound } from "./lookups.js";
import { checkDescribe, describePage, missingIds, rowsInHand, tagList as describedTags, taggedFilters, withTags } from "./listing.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

const KEY_PAIR_ID = /^key-([0-9a-f]{8}|[0-9a-f]{17})$/;

function checkKeyName(name: string | undefined): string {
  if (!name) throw new ApiError("MissingParameter", "The request must contain the parameter KeyName");
  // "Constraints: Up to 255 ASCII characters".
  if (name.length > 255 || !/^[\x20-\x7e]+$/.test(name))
    throw new ApiError("InvalidParameterValue", `Value (${name}) for parameter KeyName is invalid: up to 255 printable ASCII characters.`);
  return name;
}

const duplicate = (name: string) => new ApiError("InvalidKeyPair.Duplicate", `The keypair '${name}' already exists.`);

async function checkNameFree(ctx: ActionContext, name: string): Promise<void> {
  if ((await listKeyPairs(ctx.meta.db, ctx, { names: [name] })).length) throw duplicate(name);
}

/** Stores a new key pair with its tags; the database has the last word on the name. */
async function saveKeyPair(
  ctx: ActionContext,
  name: string,
  key: { keyType: KeyPairRow["key_type"]; fingerprint: string; publicKey: string },
  tags: { key: string; value: string }[],
): Promise<KeyPairRow> {
  const row: KeyPairRow = {
    key_pair_id: newId("key"),
    account_id: ctx.accountId,
    region: ctx.region,
    key_name: name,
    key_type: key.keyType,
    fingerprint: key.fingerprint,
    public_key: key.publicKey,
    create_time: new Date().toISOString(),
  };
  if (!(await insertKeyPair(ctx.meta.db, row))) throw duplicate(name);
  if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.key_pair_id, type: "key-pair" }], tags, TAG_LIMITS.perResource);
  return row;
}

const tagList = (tags: { key: string; value: string }[]) => (tags.length ? tags.map((t) => ({ Key: t.key, Value: t.value })) : undefined);

const KEY_PAIR_LISTING = {
  filters: taggedFilters<KeyPairRow>({
    "key-pair-id": (t) => t.row.key_pair_id,
    "key-name": (t) => t.row.key_name,
    fingerprint: (t) => t.row.fingerprint,
    "key-type": (t) => t.row.key_type,
  }),
};

export const keyPairActions: ActionTable = {
  CreateKeyPair: {
    async check(ctx, input: CreateKeyPairRequest) {
      const name = checkKeyName(input.KeyName);
      if (input.KeyType && input.KeyType !== "rsa" && input.KeyType !== "ed25519")
        throw new ApiError("InvalidParameterValue", `Value (${input.KeyType}) for parameter KeyType is invalid.`);
      if (input.KeyFormat && input.KeyFormat !== "pem" && input.KeyFormat !== "ppk")
        throw new ApiError("InvalidParameterValue", `Value (${input.KeyFormat}) for parameter KeyFormat is invalid.`);
      await checkNameFree(ctx, name);
      return tagSpecificationsFor(input.TagSpecifications, ["key-pair"]).get("key-pair") ?? [];
    },
    async run(ctx, input: CreateKeyPairRequest, tags: { key: string; value: string }[]): Promise<KeyPair> {
      const name = input.KeyName!;
      const key = await generateKeyPair(input.KeyType ?? "rsa", input.KeyFormat ?? "pem", name);
      const row = await saveKeyPair(ctx, name, key, tags);
      return { KeyName: name, KeyFingerprint: key.fingerprint, KeyMaterial: key.keyMaterial, KeyPairId: row.key_pair_id, Tags: tagList(tags) };
    },
  },

  ImportKeyPair: {
    async check(ctx, input: ImportKeyPairRequest) {
      const name = checkKeyName(input.KeyName);
      if (!input.PublicKeyMaterial?.length) throw new ApiError("MissingParameter", "The request must contain the parameter PublicKeyMaterial");
      const key = importPublicKey(Buffer.from(input.PublicKeyMaterial), name);
      await checkNameFree(ctx, name);
      return { key, tags: tagSpecificationsFor(input.TagSpecifications, ["key-pair"]).get("key-pair") ?? [] };
    },
    async run(ctx, input: ImportKeyPairRequest, { key, tags }: { key: ReturnType<typeof importPublicKey>; tags: { key: string; value: string }[] }) {
      const row = await saveKeyPair(ctx, input.KeyName!, key, tags);
      return { KeyName: row.key_name, KeyFingerprint: row.fingerprint, KeyPairId: row.key_pair_id, Tags: tagList(tags) };
    },
  },

  DescribeKeyPairs: {
    check(_ctx, input: DescribeKeyPairsRequest) {
      for (const id of input.KeyPairIds ?? []) if (!KEY_PAIR_ID.test(id)) throw keyPairNotFound([id]);
      checkDescribe(input, undefined, KEY_PAIR_LISTING);
    },
    async run(ctx, input: DescribeKeyPairsRequest): Promise<DescribeKeyPairsResult> {
      const names = requestedIds(input.KeyNames);
      const ids = requestedIds(input.KeyPairIds);
      const rows = await listKeyPairs(ctx.meta.db, ctx, { names, ids });
      const missing = [...missingIds(names, rows, (r) => r.key_name), ...missingIds(ids, rows, (r) => r.key_pair_id)];
      if (missing.length) throw keyPairNotFound(missing);
      const { page } = await describePage(
        input,
        undefined,
        KEY_PAIR_LISTING,
        rowsInHand(
          rows,
          (r) => r.key_pair_id,
          withTags(ctx, (r: KeyPairRow) => r.key_pair_id),
        ),
      );
      return {
        KeyPairs: page.map(
          ({ row, tags }): KeyPairInfo => ({
            KeyPairId: row.key_pair_id,
            KeyName: row.key_name,
            KeyType: row.key_type,
            KeyFingerprint: row.fingerprint,
            PublicKey: input.IncludePublicKey ? row.public_key : undefined,
            CreateTime: new Date(row.create_time),
            Tags: describedTags(tags),
          }),
        ),
      };
    },
  },

  DeleteKeyPair: {
    check(_ctx, input: DeleteKeyPairRequest) {
      if (!input.KeyName && !input.KeyPairId) throw new ApiError("MissingParameter", "The request must contain the parameter KeyName or KeyPairId");
      if (input.KeyPairId && !KEY_PAIR_ID.test(input.KeyPairId)) throw keyPairNotFound([input.KeyPairId]);
    },
    async run(ctx, input: DeleteKeyPairRequest) {
      // EC2 answers success for a name it does not know; an id it does not know is an error.
      const removed = await deleteKeyPair(ctx.meta.db, ctx, { name: input.KeyName, id: input.KeyPairId });
      if (!removed && input.KeyPairId) throw keyPairNotFound([input.KeyPairId]);
      return { Return: true, KeyPairId: removed?.key_pair_id };
    },
  },
};
