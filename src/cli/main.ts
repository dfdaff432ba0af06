#!/usr/bin/env node
// `kiln` command line: `kiln serve` runs the server (flags override KILN_* environment variables).
import { Command, Option } from "commander";
import { KILN_VERSION, startKiln } from "../app.js";
import { resolveConfig } from "../config.js";

const program = new Command("kiln").description("A local, EC2-compatible machine-image service.").version(KILN_VERSION);

program
  .command("serve", { isDefault: true })
  .description("serve the EC2 API (and Kiln's own /_kiln/ routes) on one port")
  .addOption(new Option("--host <host>", "address to listen on (KILN_HOST, default 127.0.0.1)"))
  .addOption(new Option("--port <port>", "TCP port (KILN_PORT, default 4566)"))
  .addOption(new Option("--data-dir <dir>", "where metadata and data live (KILN_DATA_DIR, default ./data)"))
  .addOption(new Option("--accounts-file <file>", "JSON list of accounts and credentials (KILN_ACCOUNTS_FILE)"))
  .addOption(new Option("--allow-unsigned", "serve unsigned requests as the default account (KILN_ALLOW_UNSIGNED)"))
  .addOption(new Option("--no-reset", "refuse POST /_kiln/reset (KILN_ALLOW_RESET=0)"))
  .addOption(new Option("--log-level <level>", "fatal, error, warn, info, debug or silent (KILN_LOG_LEVEL)"))
  .action(async (options: { host?: string; port?: string; dataDir?: string; accountsFile?: string; allowUnsigned?: boolean; reset?: boolean; logLevel?: string }) => {
    const config = resolveConfig({
      host: options.host,
      port: options.port,
      dataDir: options.dataDir,
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
  });

program.parseAsync().catch((error: unknown) => {
  console.error(`kiln: ${(error as Error).message}`);
  process.exit(1);
});
