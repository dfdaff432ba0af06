// Schema migrations, in order. Never edit one that has shipped: add the next.
import { sql, type Kysely, type Migration } from "kysely";

export const migrations: Record<string, Migration> = {
  "0001_tags": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("tags")
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("resource_id", "text", (c) => c.notNull())
        .addColumn("resource_type", "text", (c) => c.notNull())
        .addColumn("key", "text", (c) => c.notNull())
        .addColumn("value", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("tags_pk", ["account_id", "region", "resource_id", "key"])
        .execute();
      await sql`create index tags_by_key on tags (account_id, region, key)`.execute(db);
    },
  },
};
