#!/usr/bin/env node
// `kiln` command line: `kiln serve` runs the server (flags override KILN_* environment variables);
// `kiln import FILE` uploads and imports a disk image into a running Kiln.
import { Command, InvalidArgumentError, Option } from "commander";
import { KILN_VERSION, startKiln } from "../app.js";
import { resolveConfig } from "../config.js";

// Kiln supports Node 20 (package.json's engines). The AWS SDK warns on every client it makes under
// Node < 22 that its own releases after January 2027 will need 22: news for Kiln's maintainers, not
// for each `kiln import`. This is the SDK's own switch for that one warning; a value the user set wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const program = new Command("kiln").description("A local, EC2-compatible machine-image service.").version(KILN_VERSION);

program
  .command("serve", { isDefault: true })
  .description("serve the EC2 API (and Kiln's own /_kiln/ routes) on one port")
  .addOption(new Option("--host <host>", "address to listen on (KILN_HOST, default 127.0.0.1)"))
  .addOption(new Option("--port <port>", "TCP port (KILN_PORT, default 4566)"))
  .addOption(new Option("--data-dir <dir>", "where metadata and data live (KILN_DATA_DIR, default ./data)"))
  .addOption(new Option("--database-url <url>", "a postgres:// URL: keep metadata in PostgreSQL rather than SQLite (KILN_DATABASE_URL)"))
  .addOption(
    new Option(
      "--object-store-bucket <bucket>",
      "keep snapshot data and bucket objects in this bucket of an S3-compatible object store (KILN_OBJECT_STORE_BUCKET)",
    ),
  )
  .addOption(new Option("--object-store-endpoint <url>", "the object store's URL; AWS S3 when absent (KILN_OBJECT_STORE_ENDPOINT)"))
  .addOption(new Option("--accounts-file <file>", "JSON list of accounts and credentials (KILN_ACCOUNTS_FILE)"))
  .addOption(new Option("--allow-unsigned", "serve unsigned requests as the default account (KILN_ALLOW_UNSIGNED)"))
  .addOption(new Option("--no-reset", "refuse POST /_kiln/reset (KILN_ALLOW_RESET=0)"))
  .addOption(new Option("--log-level <level>", "fatal, error, warn, info, debug or silent (KILN_LOG_LEVEL)"))
  .action(
    async (options: {
      host?: string;
      port?: string;
      dataDir?: string;
      databaseUrl?: string;
      objectStoreBucket?: string;
      objectStoreEndpoint?: string;
      accountsFile?: string;
      allowUnsigned?: boolean;
      reset?: boolean;
      logLevel?: string;
    }) => {
      const config = resolveConfig({
        host: options.host,
        port: options.port,
        dataDir: options.dataDir,
        databaseUrl: options.databaseUrl,
        objectStoreBucket: options.objectStoreBucket,
        objectStoreEndpoint: options.objectStoreEndpoint,
        accountsFile: options.accountsFile,
        allowUnsigned: options.allowUnsigned,
        allowReset: options.reset === false ? false : undefined,
        logLevel: options.logLevel,
      });
      const kiln = await startKiln(config);
      kiln.logger.info({ url: kiln.url, dataDir: config.dataDir, allowUnsigned: config.allowUnsigned }, `Kiln ${KILN_VERSION} listening on ${kiln.url}`);
      const stop = () => {
        kiln.logger.info("shutting down");
        void kiln.close().then(() => process.exit(0));
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    },
  );

program
  .command("import <file>")
  .description("upload a disk image (VMDK, VHD, VHDX, RAW, OVA, QCOW2) to a running Kiln and import it; prints the AMI id")
  .addOption(new Option("--endpoint <url>", "Kiln's URL").env("KILN_ENDPOINT").default("http://127.0.0.1:4566"))
  .addOption(new Option("--region <region>", "region to import into").env("AWS_REGION").default("us-east-1"))
  .addOption(new Option("--bucket <bucket>", "bucket to upload to (made if missing)").default("kiln-imports"))
  .addOption(new Option("--key <key>", "object key (default: the file's name)"))
  .addOption(new Option("--format <format>", "OVA, VHD, VHDX, VMDK, RAW or QCOW2 (default: read from the file)"))
  .addOption(new Option("--description <text>", "the import's and the AMI's description"))
  .addOption(new Option("--snapshot", "ImportSnapshot: make a snapshot of a data disk, print its id"))
  .addOption(
    new Option("--part-size <MiB>", "multipart upload part size").default("16").argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 5 || n > 5120) throw new InvalidArgumentError("a whole number of MiB from 5 to 5120");
      return n;
    }),
  )
  .addOption(new Option("--no-progress", "no progress output"))
  // What import.ts reads: the clients get endpoint, region and credentials from it, never from the SDK's own chain.
  .addHelpText(
    "after",
    `
Where it sends the file, and as whom:
  endpoint     --endpoint, else KILN_ENDPOINT, else http://127.0.0.1:4566 (AWS_ENDPOINT_URL is not read)
  region       --region, else AWS_REGION, else us-east-1 (AWS_DEFAULT_REGION is not read)
  credentials  AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN when set), else
               test/test, Kiln's default account; AWS_PROFILE and ~/.aws files are not read

Example:
  AWS_ACCESS_KEY_ID=111122223333 AWS_SECRET_ACCESS_KEY=test kiln import disk.vmdk --endpoint http://127.0.0.1:4566`,
  )
  .action(
    async (
      file: string,
      options: {
        endpoint: string;
        region: string;
        bucket: string;
        key?: string;
        format?: string;
        description?: string;
        snapshot?: boolean;
        partSize: number | string;
        progress: boolean;
      },
    ) => {
      // Loaded here, so `kiln serve` does not load the AWS SDK clients it never uses.
      const { importFile } = await import("./import.js");
      const id = await importFile(file, { ...options, partSizeMiB: Number(options.partSize) });
      process.stdout.write(`${id}\n`);
    },
  );

program.parseAsync().catch((error: unknown) => {
  console.error(`kiln: ${(error as Error).message}`);
  process.exit(1);
});
