// Schema migrations, in order, for SQLite and PostgreSQL alike. Never change what one that has
// shipped does: add the next. (Declaring a column bigint rather than integer changes nothing on
// SQLite, and is what PostgreSQL needs for values past 2^31.)
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
  "0002_snapshots": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("snapshots")
        .addColumn("snapshot_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("volume_id", "text", (c) => c.notNull())
        .addColumn("volume_size", "integer", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("progress", "text", (c) => c.notNull())
        .addColumn("start_time", "text", (c) => c.notNull())
        .addColumn("description", "text", (c) => c.notNull())
        .addColumn("encrypted", "integer", (c) => c.notNull())
        .addColumn("kms_key_id", "text")
        .addColumn("parent_snapshot_id", "text")
        .addColumn("client_token", "text")
        .execute();
      await sql`create index snapshots_by_owner on snapshots (account_id, region, snapshot_id)`.execute(db);
      await sql`create unique index snapshots_by_client_token on snapshots (account_id, region, client_token) where client_token is not null`.execute(db);
      await db.schema
        .createTable("snapshot_blocks")
        .addColumn("snapshot_id", "text", (c) => c.notNull())
        .addColumn("block_index", "integer", (c) => c.notNull())
        .addColumn("chunk", "text", (c) => c.notNull())
        .addColumn("written", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("snapshot_blocks_pk", ["snapshot_id", "block_index"])
        .execute();
    },
  },
  "0003_volumes": {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("snapshots").addColumn("next_state", "text").execute();
      await db.schema.alterTable("snapshots").addColumn("next_state_at", "text").execute();
      await db.schema
        .createTable("volumes")
        .addColumn("volume_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("size", "integer", (c) => c.notNull())
        .addColumn("snapshot_id", "text")
        .addColumn("availability_zone", "text", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("next_state", "text")
        .addColumn("next_state_at", "text")
        .addColumn("volume_type", "text", (c) => c.notNull())
        .addColumn("iops", "integer")
        .addColumn("throughput", "integer")
        .addColumn("encrypted", "integer", (c) => c.notNull())
        .addColumn("kms_key_id", "text")
        .addColumn("multi_attach_enabled", "integer", (c) => c.notNull())
        .addColumn("create_time", "text", (c) => c.notNull())
        .addColumn("client_token", "text")
        .execute();
      await sql`create index volumes_by_owner on volumes (account_id, region, volume_id)`.execute(db);
      await sql`create unique index volumes_by_client_token on volumes (account_id, region, client_token) where client_token is not null`.execute(db);
      await db.schema
        .createTable("volume_blocks")
        .addColumn("volume_id", "text", (c) => c.notNull())
        .addColumn("block_index", "integer", (c) => c.notNull())
        .addColumn("chunk", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("volume_blocks_pk", ["volume_id", "block_index"])
        .execute();
    },
  },
  "0004_images": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("images")
        .addColumn("image_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("description", "text", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("next_state", "text")
        .addColumn("next_state_at", "text")
        .addColumn("state_reason_code", "text")
        .addColumn("state_reason_message", "text")
        .addColumn("architecture", "text", (c) => c.notNull())
        .addColumn("virtualization_type", "text", (c) => c.notNull())
        .addColumn("root_device_name", "text", (c) => c.notNull())
        .addColumn("root_device_type", "text", (c) => c.notNull())
        .addColumn("ena_support", "integer", (c) => c.notNull())
        .addColumn("sriov_net_support", "text")
        .addColumn("boot_mode", "text")
        .addColumn("tpm_support", "text")
        .addColumn("imds_support", "text")
        .addColumn("platform", "text")
        .addColumn("creation_date", "text", (c) => c.notNull())
        .addColumn("deprecation_time", "text")
        .addColumn("public", "integer", (c) => c.notNull())
        .addColumn("owner_alias", "text")
        .addColumn("source_instance_id", "text")
        .addColumn("kernel_id", "text")
        .addColumn("ramdisk_id", "text")
        .execute();
      // Names are unique per account and region (InvalidAMIName.Duplicate), enforced by the database.
      await sql`create unique index images_by_name on images (account_id, region, name)`.execute(db);
      await sql`create index images_by_region on images (region, image_id)`.execute(db);
      await db.schema
        .createTable("image_block_devices")
        .addColumn("image_id", "text", (c) => c.notNull())
        .addColumn("position", "integer", (c) => c.notNull())
        .addColumn("device_name", "text", (c) => c.notNull())
        .addColumn("virtual_name", "text")
        .addColumn("no_device", "integer", (c) => c.notNull())
        .addColumn("snapshot_id", "text")
        .addColumn("volume_size", "integer")
        .addColumn("volume_type", "text")
        .addColumn("delete_on_termination", "integer")
        .addColumn("encrypted", "integer")
        .addColumn("iops", "integer")
        .addColumn("throughput", "integer")
        .addColumn("kms_key_id", "text")
        .addPrimaryKeyConstraint("image_block_devices_pk", ["image_id", "position"])
        .execute();
      await sql`create index image_block_devices_by_snapshot on image_block_devices (snapshot_id)`.execute(db);
      await db.schema
        .createTable("image_launch_permissions")
        .addColumn("image_id", "text", (c) => c.notNull())
        .addColumn("grantee", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("image_launch_permissions_pk", ["image_id", "grantee"])
        .execute();
    },
  },
  "0005_instances": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("instances")
        .addColumn("instance_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("reservation_id", "text", (c) => c.notNull())
        .addColumn("image_id", "text", (c) => c.notNull())
        .addColumn("instance_type", "text", (c) => c.notNull())
        .addColumn("key_name", "text")
        .addColumn("availability_zone", "text", (c) => c.notNull())
        .addColumn("state_schedule", "text", (c) => c.notNull())
        .addColumn("state_transition_reason", "text", (c) => c.notNull())
        .addColumn("launch_time", "text", (c) => c.notNull())
        .addColumn("ami_launch_index", "integer", (c) => c.notNull())
        .addColumn("architecture", "text", (c) => c.notNull())
        .addColumn("root_device_name", "text", (c) => c.notNull())
        .addColumn("virtualization_type", "text", (c) => c.notNull())
        .addColumn("ena_support", "integer", (c) => c.notNull())
        .addColumn("boot_mode", "text")
        .addColumn("platform", "text")
        .addColumn("client_token", "text")
        .execute();
      await sql`create index instances_by_owner on instances (account_id, region, instance_id)`.execute(db);
      await db.schema
        .createTable("volume_attachments")
        .addColumn("volume_id", "text", (c) => c.primaryKey())
        .addColumn("instance_id", "text", (c) => c.notNull())
        .addColumn("device", "text", (c) => c.notNull())
        .addColumn("attach_time", "text", (c) => c.notNull())
        .addColumn("delete_on_termination", "integer", (c) => c.notNull())
        .execute();
      await sql`create unique index volume_attachments_by_device on volume_attachments (instance_id, device)`.execute(db);
    },
  },
  "0006_image_names": {
    async up(db: Kysely<any>) {
      // DescribeImages narrows by name (exact or prefix) across owners, as aws_ami lookups do.
      await sql`create index images_by_region_name on images (region, name)`.execute(db);
    },
  },
  "0007_layered_manifests": {
    async up(db: Kysely<any>) {
      // What a snapshot's or volume's manifest rests on (store/meta/manifests.ts). Existing
      // manifests are whole and rest on nothing.
      await db.schema
        .createTable("layer_bases")
        .addColumn("layer_id", "text", (c) => c.primaryKey())
        .addColumn("base_snapshot_id", "text", (c) => c.notNull())
        .execute();
      await sql`create index layer_bases_by_base on layer_bases (base_snapshot_id)`.execute(db);
    },
  },
  "0008_image_client_tokens": {
    async up(db: Kysely<any>) {
      await db.schema.alterTable("images").addColumn("client_token", "text").execute();
      await sql`create unique index images_by_client_token on images (account_id, region, client_token) where client_token is not null`.execute(db);
    },
  },
  "0009_buckets": {
    async up(db: Kysely<any>) {
      // S3 bucket names are global: one table, the name its key, whatever the account.
      await db.schema
        .createTable("buckets")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("creation_date", "text", (c) => c.notNull())
        .execute();
      await sql`create index buckets_by_owner on buckets (account_id, name)`.execute(db);
    },
  },
  "0010_objects": {
    async up(db: Kysely<any>) {
      // An object row is written only once its bytes are whole in the object store: a reader
      // sees the old object or the new one, never a torn one.
      await db.schema
        .createTable("objects")
        .addColumn("bucket", "text", (c) => c.notNull())
        .addColumn("key", "text", (c) => c.notNull())
        // bigint: an object may pass 2 GiB (on SQLite, integer and bigint are the same type).
        .addColumn("size", "bigint", (c) => c.notNull())
        .addColumn("etag", "text", (c) => c.notNull())
        .addColumn("blobs", "text", (c) => c.notNull())
        .addColumn("content_type", "text", (c) => c.notNull())
        .addColumn("headers", "text", (c) => c.notNull())
        .addColumn("metadata", "text", (c) => c.notNull())
        .addColumn("tags", "text", (c) => c.notNull())
        .addColumn("checksum_algorithm", "text")
        .addColumn("checksum_value", "text")
        .addColumn("checksum_type", "text")
        .addColumn("part_sizes", "text")
        .addColumn("last_modified", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("objects_pk", ["bucket", "key"])
        .execute();
      await db.schema
        .createTable("uploads")
        .addColumn("upload_id", "text", (c) => c.primaryKey())
        .addColumn("bucket", "text", (c) => c.notNull())
        .addColumn("key", "text", (c) => c.notNull())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("initiated", "text", (c) => c.notNull())
        .addColumn("content_type", "text", (c) => c.notNull())
        .addColumn("headers", "text", (c) => c.notNull())
        .addColumn("metadata", "text", (c) => c.notNull())
        .addColumn("tags", "text", (c) => c.notNull())
        .addColumn("checksum_algorithm", "text")
        .addColumn("checksum_type", "text")
        .execute();
      await sql`create index uploads_by_key on uploads (bucket, key, initiated)`.execute(db);
      await db.schema
        .createTable("upload_parts")
        .addColumn("upload_id", "text", (c) => c.notNull())
        .addColumn("part_number", "integer", (c) => c.notNull())
        .addColumn("blob_id", "text", (c) => c.notNull())
        .addColumn("size", "bigint", (c) => c.notNull())
        .addColumn("etag", "text", (c) => c.notNull())
        .addColumn("checksum", "text")
        .addColumn("last_modified", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("upload_parts_pk", ["upload_id", "part_number"])
        .execute();
    },
  },
  "0011_tasks": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("tasks")
        .addColumn("task_id", "text", (c) => c.primaryKey())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("progress", "integer", (c) => c.notNull())
        .addColumn("params", "text", (c) => c.notNull())
        .addColumn("failure", "text")
        .addColumn("created", "text", (c) => c.notNull())
        .addColumn("updated", "text", (c) => c.notNull())
        .execute();
      await sql`create index tasks_by_owner on tasks (account_id, region, kind, created)`.execute(db);
      await sql`create index tasks_running on tasks (state) where state = 'running'`.execute(db);
    },
  },
  "0012_conversion_tasks": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("conversion_tasks")
        .addColumn("task_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("client_token", "text")
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("status_message", "text")
        .addColumn("progress", "text")
        .addColumn("details", "text", (c) => c.notNull())
        .addColumn("created", "text", (c) => c.notNull())
        .addColumn("updated", "text", (c) => c.notNull())
        .execute();
      await sql`create index conversion_tasks_by_owner on conversion_tasks (account_id, region, kind, task_id)`.execute(db);
      await sql`create unique index conversion_tasks_by_token on conversion_tasks (account_id, region, kind, client_token) where client_token is not null`.execute(
        db,
      );
    },
  },
  "0013_key_pairs": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("key_pairs")
        .addColumn("key_pair_id", "text", (c) => c.primaryKey())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("key_name", "text", (c) => c.notNull())
        .addColumn("key_type", "text", (c) => c.notNull())
        .addColumn("fingerprint", "text", (c) => c.notNull())
        .addColumn("public_key", "text", (c) => c.notNull())
        .addColumn("create_time", "text", (c) => c.notNull())
        .execute();
      // Names are unique per account and region (InvalidKeyPair.Duplicate), enforced by the database.
      await sql`create unique index key_pairs_by_name on key_pairs (account_id, region, key_name)`.execute(db);
    },
  },
  "0014_network": {
    async up(db: Kysely<any>) {
      const text = "text" as const;
      const int = "integer" as const;
      await db.schema
        .createTable("default_networks")
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("vpc_id", text, (c) => c.notNull())
        .addPrimaryKeyConstraint("default_networks_pk", ["account_id", "region"])
        .execute();
      await db.schema
        .createTable("vpcs")
        .addColumn("vpc_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("cidr_block", text, (c) => c.notNull())
        .addColumn("cidr_association_id", text, (c) => c.notNull())
        .addColumn("is_default", int, (c) => c.notNull())
        .addColumn("instance_tenancy", text, (c) => c.notNull())
        .addColumn("dhcp_options_id", text, (c) => c.notNull())
        .addColumn("enable_dns_support", int, (c) => c.notNull())
        .addColumn("enable_dns_hostnames", int, (c) => c.notNull())
        .execute();
      await sql`create index vpcs_by_owner on vpcs (account_id, region, vpc_id)`.execute(db);
      await db.schema
        .createTable("subnets")
        .addColumn("subnet_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("vpc_id", text, (c) => c.notNull())
        .addColumn("cidr_block", text, (c) => c.notNull())
        .addColumn("availability_zone", text, (c) => c.notNull())
        .addColumn("default_for_az", int, (c) => c.notNull())
        .addColumn("map_public_ip_on_launch", int, (c) => c.notNull())
        .execute();
      await sql`create index subnets_by_vpc on subnets (vpc_id)`.execute(db);
      await sql`create index subnets_by_owner on subnets (account_id, region, subnet_id)`.execute(db);
      await db.schema
        .createTable("internet_gateways")
        .addColumn("internet_gateway_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("vpc_id", text)
        .execute();
      await db.schema
        .createTable("route_tables")
        .addColumn("route_table_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("vpc_id", text, (c) => c.notNull())
        .addColumn("main", int, (c) => c.notNull())
        .addColumn("main_association_id", text)
        .addColumn("routes", text, (c) => c.notNull())
        .execute();
      await db.schema
        .createTable("security_groups")
        .addColumn("group_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("vpc_id", text, (c) => c.notNull())
        .addColumn("group_name", text, (c) => c.notNull())
        .addColumn("description", text, (c) => c.notNull())
        .execute();
      // A group name is unique within its VPC (InvalidGroup.Duplicate), enforced by the database.
      await sql`create unique index security_groups_by_name on security_groups (vpc_id, group_name)`.execute(db);
      await sql`create index security_groups_by_owner on security_groups (account_id, region, group_id)`.execute(db);
      await db.schema
        .createTable("security_group_rules")
        .addColumn("rule_id", text, (c) => c.primaryKey())
        .addColumn("group_id", text, (c) => c.notNull())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("is_egress", int, (c) => c.notNull())
        .addColumn("ip_protocol", text, (c) => c.notNull())
        .addColumn("from_port", int)
        .addColumn("to_port", int)
        .addColumn("cidr_ipv4", text)
        .addColumn("cidr_ipv6", text)
        .addColumn("prefix_list_id", text)
        .addColumn("referenced_group_id", text)
        .addColumn("referenced_account_id", text)
        .addColumn("description", text)
        .execute();
      await sql`create index security_group_rules_by_group on security_group_rules (group_id)`.execute(db);
      await sql`create index security_group_rules_by_reference on security_group_rules (referenced_group_id)`.execute(db);
      await db.schema
        .createTable("network_interfaces")
        .addColumn("network_interface_id", text, (c) => c.primaryKey())
        .addColumn("account_id", text, (c) => c.notNull())
        .addColumn("region", text, (c) => c.notNull())
        .addColumn("subnet_id", text, (c) => c.notNull())
        .addColumn("vpc_id", text, (c) => c.notNull())
        .addColumn("availability_zone", text, (c) => c.notNull())
        .addColumn("private_ip", text, (c) => c.notNull())
        .addColumn("mac_address", text, (c) => c.notNull())
        .addColumn("description", text, (c) => c.notNull())
        .addColumn("public_ip", text)
        .addColumn("source_dest_check", int, (c) => c.notNull())
        .addColumn("instance_id", text)
        .addColumn("device_index", int)
        .addColumn("attachment_id", text)
        .addColumn("attach_time", text)
        .addColumn("delete_on_termination", int, (c) => c.notNull())
        .execute();
      // One interface per address in a subnet: two launches can never get the same one.
      await sql`create unique index network_interfaces_by_address on network_interfaces (subnet_id, private_ip)`.execute(db);
      await sql`create index network_interfaces_by_instance on network_interfaces (instance_id)`.execute(db);
      await db.schema
        .createTable("network_interface_groups")
        .addColumn("network_interface_id", text, (c) => c.notNull())
        .addColumn("group_id", text, (c) => c.notNull())
        .addPrimaryKeyConstraint("network_interface_groups_pk", ["network_interface_id", "group_id"])
        .execute();
      await sql`create index network_interface_groups_by_group on network_interface_groups (group_id)`.execute(db);
      // Attributes launch tools read and change (DescribeInstanceAttribute, ModifyInstanceAttribute).
      await db.schema.alterTable("instances").addColumn("user_data", text).execute();
      for (const column of ["disable_api_termination", "disable_api_stop", "ebs_optimized"]) {
        await db.schema
          .alterTable("instances")
          .addColumn(column, int, (c) => c.notNull().defaultTo(0))
          .execute();
      }
      await db.schema
        .alterTable("instances")
        .addColumn("shutdown_behavior", text, (c) => c.notNull().defaultTo("stop"))
        .execute();
      await db.schema.alterTable("instances").addColumn("sriov_net_support", text).execute();
      await db.schema.alterTable("instances").addColumn("cpu_credits", text).execute();
      await db.schema.alterTable("instances").addColumn("kernel_id", text).execute();
      await db.schema.alterTable("instances").addColumn("ramdisk_id", text).execute();
    },
  },
  "0015_chunk_locations": {
    async up(db: Kysely<any>) {
      // Where each stored chunk lies: a slot of a pack file (store/blocks/packs.ts).
      await db.schema
        .createTable("chunk_locations")
        .addColumn("chunk", "text", (c) => c.primaryKey())
        .addColumn("pack", "text", (c) => c.notNull())
        .addColumn("slot", "integer", (c) => c.notNull())
        .addColumn("stored_at", "bigint", (c) => c.notNull())
        .execute();
      await sql`create index chunk_locations_by_pack on chunk_locations (pack)`.execute(db);
    },
  },
  "0016_task_leases": {
    async up(db: Kysely<any>) {
      // Several nodes share the durable tasks: a task runs on the node that holds its lease
      // (tasks/runner.ts); a cancel asked of another node waits in the row for the owner to see.
      await db.schema.alterTable("tasks").addColumn("owner", "text").execute();
      await db.schema.alterTable("tasks").addColumn("lease_until", "bigint").execute();
      await db.schema.alterTable("tasks").addColumn("cancel_requested", "text").execute();
    },
  },
  "0017_instance_client_tokens": {
    async up(db: Kysely<any>) {
      // RunInstances' ClientToken, held by the database as the other tokens are: the instances of
      // one launch share a token and differ in launch index, so a second launch with the token
      // (a racing request, on this node or another) is refused at its first instance.
      await sql`create unique index instances_by_client_token on instances (account_id, region, client_token, ami_launch_index) where client_token is not null`.execute(
        db,
      );
    },
  },
  "0018_image_billing": {
    async up(db: Kysely<any>) {
      // Public images billed otherwise than Linux/UNIX or Windows (RHEL, SUSE, Windows with SQL
      // Server) say so in DescribeImages' PlatformDetails and UsageOperation.
      await db.schema.alterTable("images").addColumn("platform_details", "text").execute();
      await db.schema.alterTable("images").addColumn("usage_operation", "text").execute();
    },
  },
  "0019_ssm_parameters": {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("ssm_parameters")
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("region", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("type", "text", (c) => c.notNull())
        .addColumn("value", "text", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("description", "text")
        .addColumn("allowed_pattern", "text")
        .addColumn("tier", "text", (c) => c.notNull())
        .addColumn("data_type", "text", (c) => c.notNull())
        .addColumn("key_id", "text")
        .addColumn("last_modified", "text", (c) => c.notNull())
        .addColumn("tags", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("ssm_parameters_pk", ["account_id", "region", "name"])
        .execute();
    },
  },
  "0020_instance_nodes": {
    async up(db: Kysely<any>) {
      // The node whose qemu runs a guest, and how long its hold lasts unrenewed: at its next
      // start it boots its own instances again; when its hold lapses, another node does.
      await db.schema.alterTable("instances").addColumn("node_id", "text").execute();
      await db.schema.alterTable("instances").addColumn("node_lease_until", "bigint").execute();
    },
  },
  "0021_uefi_data": {
    async up(db: Kysely<any>) {
      // EC2's UEFI data (the AMZNUEFI blob, base64): an image's, as registered or captured, and
      // an instance's, seeded from its image and saved from its guest's variable store when the
      // guest ends, so another node or a later CreateImage has it.
      await db.schema.alterTable("images").addColumn("uefi_data", "text").execute();
      await db.schema.alterTable("instances").addColumn("uefi_data", "text").execute();
    },
  },
  "0022_volume_journal": {
    async up(db: Kysely<any>) {
      // A running volume's small writes, logged in segments until they are folded into its blocks.
      await db.schema
        .createTable("volume_journal")
        .addColumn("volume_id", "text", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .addColumn("chunk", "text", (c) => c.notNull())
        .addColumn("extents", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("volume_journal_pk", ["volume_id", "seq"])
        .execute();
    },
  },
  "0023_guest_requests": {
    async up(db: Kysely<any>) {
      // What a node asks of a guest another node runs: a reboot, to let go of a volume being
      // detached, or to settle one before a snapshot. The node running it carries it out and
      // answers (detach, settle) or drops it (reboot).
      await db.schema
        .createTable("guest_requests")
        .addColumn("instance_id", "text", (c) => c.notNull())
        .addColumn("kind", "text", (c) => c.notNull())
        .addColumn("volume_id", "text", (c) => c.notNull())
        .addColumn("answered", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("guest_requests_pk", ["instance_id", "kind", "volume_id"])
        .execute();
    },
  },
  "0024_instance_metadata_options": {
    async up(db: Kysely<any>) {
      // The instance metadata service's options (api/ec2/metadata-options.ts). Instances from
      // before have EC2's defaults for an image with no ImdsSupport.
      const columns: [string, "text" | "integer", string | number][] = [
        ["http_tokens", "text", "optional"],
        ["http_endpoint", "text", "enabled"],
        ["http_put_response_hop_limit", "integer", 1],
        ["http_protocol_ipv6", "text", "disabled"],
        ["instance_metadata_tags", "text", "disabled"],
      ];
      for (const [name, type, value] of columns) {
        await db.schema
          .alterTable("instances")
          .addColumn(name, type, (c) => c.notNull().defaultTo(value))
          .execute();
      }
    },
  },
};
