// Table types for the query layer. Every resource row carries account_id and region.
export interface TagTable {
  account_id: string;
  region: string;
  resource_id: string;
  resource_type: string;
  key: string;
  value: string;
}

export interface SnapshotTable {
  account_id: string;
  region: string;
  snapshot_id: string;
  /** vol-ffffffff for snapshots not taken from a volume, as AWS reports them. */
  volume_id: string;
  /** GiB. */
  volume_size: number;
  state: "pending" | "completed" | "error";
  progress: string;
  /** ISO 8601. */
  start_time: string;
  description: string;
  encrypted: number;
  kms_key_id: string | null;
  parent_snapshot_id: string | null;
  client_token: string | null;
  /** The state the snapshot settles into at next_state_at (lazy transitions, see domain/transitions.ts). */
  next_state: "pending" | "completed" | "error" | null;
  next_state_at: string | null;
}

export interface VolumeTable {
  account_id: string;
  region: string;
  volume_id: string;
  /** GiB. */
  size: number;
  snapshot_id: string | null;
  availability_zone: string;
  state: "creating" | "available" | "in-use" | "deleting" | "deleted" | "error";
  next_state: VolumeTable["state"] | null;
  next_state_at: string | null;
  volume_type: string;
  iops: number | null;
  throughput: number | null;
  encrypted: number;
  kms_key_id: string | null;
  multi_attach_enabled: number;
  create_time: string;
  client_token: string | null;
}

/** A volume's data: which chunk holds each block it changed from its base (as snapshot_blocks does for a snapshot). */
export interface VolumeBlockTable {
  volume_id: string;
  block_index: number;
  chunk: string;
}

/**
 * A running volume's write journal (vm/volume-device.ts): one row per journal segment, a chunk
 * holding write payloads one after another, and where each belongs, in the order written. The
 * rows are newer than the volume's blocks until a fold writes them into blocks and drops them.
 */
export interface VolumeJournalTable {
  volume_id: string;
  seq: number;
  chunk: string;
  /** JSON: [block index, offset in the block, length, offset in the segment or -1 for zeros][]. */
  extents: string;
}

/** Where a chunk is stored: slot `slot` of pack file `pack`, last put at `stored_at` (ms since the epoch). */
export interface ChunkLocationTable {
  chunk: string;
  pack: string;
  slot: number;
  stored_at: number;
}

/** A snapshot's manifest: which chunk holds each block it changed from its base (if any). */
export interface SnapshotBlockTable {
  snapshot_id: string;
  block_index: number;
  /** SHA-256 of the block, or '' for a block of zeros. */
  chunk: string;
  /** 1 when this snapshot wrote the block; 0 when it came from a base folded or flattened in. */
  written: number;
}

/** A snapshot's or volume's manifest resting on a snapshot's (see manifests.ts). */
export interface LayerBaseTable {
  /** snap-… or vol-… */
  layer_id: string;
  base_snapshot_id: string;
}

export interface ImageTable {
  account_id: string;
  region: string;
  image_id: string;
  name: string;
  description: string;
  state: "pending" | "available" | "failed" | "deregistered" | "invalid" | "transient" | "error" | "disabled";
  next_state: ImageTable["state"] | null;
  next_state_at: string | null;
  state_reason_code: string | null;
  state_reason_message: string | null;
  architecture: string;
  virtualization_type: string;
  root_device_name: string;
  root_device_type: string;
  ena_support: number;
  sriov_net_support: string | null;
  boot_mode: string | null;
  tpm_support: string | null;
  imds_support: string | null;
  /** EC2's UEFI data (formats/uefi/aws-uefi-data.ts), base64; null: none. */
  uefi_data: string | null;
  /** 'windows' or null, as DescribeImages reports it. */
  platform: string | null;
  /** What EC2 bills it as (PlatformDetails, UsageOperation); null: from platform. */
  platform_details: string | null;
  usage_operation: string | null;
  creation_date: string;
  deprecation_time: string | null;
  public: number;
  owner_alias: string | null;
  /** CopyImage's ClientToken, which makes a retried copy answer the first one's image. */
  client_token: string | null;
  source_instance_id: string | null;
  kernel_id: string | null;
  ramdisk_id: string | null;
}

/** An image's block device mappings, in order. */
export interface ImageBlockDeviceTable {
  image_id: string;
  position: number;
  device_name: string;
  virtual_name: string | null;
  no_device: number;
  snapshot_id: string | null;
  volume_size: number | null;
  volume_type: string | null;
  delete_on_termination: number | null;
  encrypted: number | null;
  iops: number | null;
  throughput: number | null;
  kms_key_id: string | null;
}

/** Who besides the owner may see and launch an image: an account id, or the group 'all'. */
export interface ImageLaunchPermissionTable {
  image_id: string;
  grantee: string;
}

export interface InstanceTable {
  account_id: string;
  region: string;
  instance_id: string;
  reservation_id: string;
  image_id: string;
  instance_type: string;
  key_name: string | null;
  availability_zone: string;
  /** JSON: the state schedule (domain/transitions.ts). */
  state_schedule: string;
  state_transition_reason: string;
  launch_time: string;
  ami_launch_index: number;
  architecture: string;
  root_device_name: string;
  virtualization_type: string;
  ena_support: number;
  boot_mode: string | null;
  /** EC2's UEFI data: the image's at launch, then the guest's variables as its last run left them. */
  uefi_data: string | null;
  platform: string | null;
  client_token: string | null;
  /** Base64, exactly as given. */
  user_data: string | null;
  disable_api_termination: number;
  disable_api_stop: number;
  ebs_optimized: number;
  /** stop | terminate: what a shutdown from inside the instance does. */
  shutdown_behavior: string;
  sriov_net_support: string | null;
  /** standard | unlimited (burstable types); the type's default when null. */
  cpu_credits: string | null;
  kernel_id: string | null;
  ramdisk_id: string | null;
  /** The node whose qemu runs the instance's guest (the qemu backend), else null. */
  node_id: string | null;
  /** Until when (ms since the epoch) the node's hold lasts unrenewed. */
  node_lease_until: number | null;
  /** The metadata options (api/ec2/metadata-options.ts): optional | required. */
  http_tokens: string;
  /** enabled | disabled */
  http_endpoint: string;
  http_put_response_hop_limit: number;
  /** enabled | disabled */
  http_protocol_ipv6: string;
  /** enabled | disabled: the instance's tags in its metadata. */
  instance_metadata_tags: string;
}

export interface VolumeAttachmentTable {
  volume_id: string;
  instance_id: string;
  device: string;
  attach_time: string;
  delete_on_termination: number;
}

/**
 * A request for a guest's node, from another node: `reboot` (volume_id ''), `detach` of a
 * volume, answered (answered 1) once the guest has let go of it, or `settle` of a volume (its
 * journal folded, before a snapshot), answered once done.
 */
export interface GuestRequestTable {
  instance_id: string;
  kind: "reboot" | "detach" | "settle";
  volume_id: string;
  answered: number;
}

/** An S3 bucket; its name is unique across accounts and regions, as in S3. */
export interface BucketTable {
  name: string;
  account_id: string;
  region: string;
  /** ISO 8601. */
  creation_date: string;
}

/** Where an object's bytes are: blobs in order, each read whole. */
export interface BlobRef {
  id: string;
  size: number;
}

/** An S3 object: its bytes are blobs in the object store (store/objects/), everything else is here. */
export interface ObjectTable {
  bucket: string;
  key: string;
  size: number;
  /** Quoted, as S3 sends it: MD5 hex, or MD5-of-part-MD5s "-N" for a multipart object. */
  etag: string;
  /** JSON BlobRef[]. */
  blobs: string;
  content_type: string;
  /** JSON: Cache-Control, Content-Disposition, Content-Encoding, Content-Language, Expires as sent. */
  headers: string;
  /** JSON: user metadata (x-amz-meta-*), names lower-case without the prefix. */
  metadata: string;
  /** JSON [[key, value], …]: object tags in order. */
  tags: string;
  checksum_algorithm: string | null;
  checksum_value: string | null;
  /** FULL_OBJECT or COMPOSITE. */
  checksum_type: string | null;
  /** For multipart objects: JSON part sizes, for GetObject's partNumber. */
  part_sizes: string | null;
  /** ISO 8601. */
  last_modified: string;
}

export interface UploadTable {
  upload_id: string;
  bucket: string;
  key: string;
  account_id: string;
  initiated: string;
  content_type: string;
  headers: string;
  metadata: string;
  tags: string;
  checksum_algorithm: string | null;
  checksum_type: string | null;
}

export interface UploadPartTable {
  upload_id: string;
  part_number: number;
  blob_id: string;
  size: number;
  etag: string;
  checksum: string | null;
  last_modified: string;
}

/** Long work (store, restore, and later import and export), durable across restarts. */
export interface TaskTable {
  task_id: string;
  kind: string;
  account_id: string;
  region: string;
  state: "running" | "completed" | "failed";
  /** Whole percent, 0–100. */
  progress: number;
  /** JSON: what the task was asked to do, as its kind defines it. */
  params: string;
  failure: string | null;
  /** ISO 8601. */
  created: string;
  updated: string;
  /** The node running it, while its lease (ms since the epoch) lasts; another may take it over after. */
  owner: string | null;
  lease_until: number | null;
  /** A cancel's message, asked of whichever node runs the task. */
  cancel_requested: string | null;
}

/**
 * What a user sees of an import or export task (ImportImage, ImportSnapshot, ExportImage); the
 * work itself is the `tasks` row of the same id.
 */
export interface ConversionTaskTable {
  task_id: string;
  account_id: string;
  region: string;
  kind: "import-image" | "import-snapshot" | "export-image";
  client_token: string | null;
  /** active | deleting | deleted | completed. */
  status: string;
  status_message: string | null;
  /** A percentage while active, as AWS reports it ("28"). */
  progress: string | null;
  /** JSON: what the request asked for, each disk's details, and what the task found. */
  details: string;
  created: string;
  updated: string;
}

export interface KeyPairTable {
  key_pair_id: string;
  account_id: string;
  region: string;
  key_name: string;
  key_type: "rsa" | "ed25519";
  fingerprint: string;
  /** An OpenSSH line, the key name its comment. */
  public_key: string;
  create_time: string;
}

/** Accounts and regions whose default network has been made (once: a deleted default VPC stays deleted). */
export interface DefaultNetworkTable {
  account_id: string;
  region: string;
  vpc_id: string;
}

export interface VpcTable {
  vpc_id: string;
  account_id: string;
  region: string;
  cidr_block: string;
  cidr_association_id: string;
  is_default: number;
  instance_tenancy: string;
  dhcp_options_id: string;
  enable_dns_support: number;
  enable_dns_hostnames: number;
}

export interface SubnetTable {
  subnet_id: string;
  account_id: string;
  region: string;
  vpc_id: string;
  cidr_block: string;
  availability_zone: string;
  default_for_az: number;
  map_public_ip_on_launch: number;
}

export interface InternetGatewayTable {
  internet_gateway_id: string;
  account_id: string;
  region: string;
  /** The VPC it is attached to, if any. */
  vpc_id: string | null;
}

export interface RouteTableTable {
  route_table_id: string;
  account_id: string;
  region: string;
  vpc_id: string;
  main: number;
  /** The main association's id (main tables only). */
  main_association_id: string | null;
  /** JSON: [{ destination, gatewayId, origin }]. */
  routes: string;
}

export interface SecurityGroupTable {
  group_id: string;
  account_id: string;
  region: string;
  vpc_id: string;
  group_name: string;
  description: string;
}

export interface SecurityGroupRuleTable {
  rule_id: string;
  group_id: string;
  account_id: string;
  region: string;
  is_egress: number;
  /** tcp | udp | icmp | icmpv6 | -1 (all) | a protocol number. */
  ip_protocol: string;
  from_port: number | null;
  to_port: number | null;
  cidr_ipv4: string | null;
  cidr_ipv6: string | null;
  prefix_list_id: string | null;
  referenced_group_id: string | null;
  referenced_account_id: string | null;
  description: string | null;
}

export interface NetworkInterfaceTable {
  network_interface_id: string;
  account_id: string;
  region: string;
  subnet_id: string;
  vpc_id: string;
  availability_zone: string;
  private_ip: string;
  mac_address: string;
  description: string;
  public_ip: string | null;
  source_dest_check: number;
  instance_id: string | null;
  device_index: number | null;
  attachment_id: string | null;
  attach_time: string | null;
  delete_on_termination: number;
}

export interface NetworkInterfaceGroupTable {
  network_interface_id: string;
  group_id: string;
}

/** An account's own SSM parameters (Parameter Store); the public ones come from the catalogue. */
export interface SsmParameterTable {
  account_id: string;
  region: string;
  name: string;
  /** String, StringList or SecureString. */
  type: string;
  value: string;
  version: number;
  description: string | null;
  allowed_pattern: string | null;
  tier: string;
  /** text, aws:ec2:image or aws:ssm:integration. */
  data_type: string;
  key_id: string | null;
  last_modified: string;
  /** JSON [[key, value], …], in the order they were added. */
  tags: string;
}

export interface MetaSchema {
  default_networks: DefaultNetworkTable;
  vpcs: VpcTable;
  subnets: SubnetTable;
  internet_gateways: InternetGatewayTable;
  route_tables: RouteTableTable;
  security_groups: SecurityGroupTable;
  security_group_rules: SecurityGroupRuleTable;
  network_interfaces: NetworkInterfaceTable;
  network_interface_groups: NetworkInterfaceGroupTable;
  tags: TagTable;
  ssm_parameters: SsmParameterTable;
  key_pairs: KeyPairTable;
  snapshots: SnapshotTable;
  snapshot_blocks: SnapshotBlockTable;
  chunk_locations: ChunkLocationTable;
  volumes: VolumeTable;
  volume_blocks: VolumeBlockTable;
  volume_journal: VolumeJournalTable;
  layer_bases: LayerBaseTable;
  images: ImageTable;
  image_block_devices: ImageBlockDeviceTable;
  image_launch_permissions: ImageLaunchPermissionTable;
  instances: InstanceTable;
  volume_attachments: VolumeAttachmentTable;
  guest_requests: GuestRequestTable;
  buckets: BucketTable;
  objects: ObjectTable;
  uploads: UploadTable;
  upload_parts: UploadPartTable;
  tasks: TaskTable;
  conversion_tasks: ConversionTaskTable;
}

/** Tables that hold state (everything but the migration bookkeeping): what a reset empties. */
export const STATE_TABLES: readonly (keyof MetaSchema)[] = [
  "tags",
  "ssm_parameters",
  "key_pairs",
  "default_networks",
  "network_interface_groups",
  "network_interfaces",
  "security_group_rules",
  "security_groups",
  "route_tables",
  "internet_gateways",
  "subnets",
  "vpcs",
  "layer_bases",
  "chunk_locations",
  "snapshot_blocks",
  "snapshots",
  "volume_blocks",
  "volume_journal",
  "volumes",
  "image_launch_permissions",
  "image_block_devices",
  "images",
  "volume_attachments",
  "guest_requests",
  "instances",
  "conversion_tasks",
  "tasks",
  "upload_parts",
  "uploads",
  "objects",
  "buckets",
];
