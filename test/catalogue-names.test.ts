// The built-in catalogue against its publishers' own naming: every image's name has the form its
// publisher gives its images, and its owner, architecture, platform, billing, root device,
// creation date and description agree with what the name says. Every series the lookups in
// documentation copy is there, and each public SSM parameter names an image of its own kind.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readBuiltInCatalogue, withOperatorEntries, type CatalogueEntry } from "../src/domain/catalogue.js";

const catalogue = readBuiltInCatalogue();

interface Publisher {
  ownerId: string;
  ownerAlias?: string;
  /** The name, with named groups: arch (the publisher's word), date (YYYYMMDD) where the name carries one. */
  pattern: RegExp;
  check(entry: CatalogueEntry, name: RegExpExecArray["groups"] & {}): void;
}

const LINUX = { platformDetails: "Linux/UNIX", usageOperation: "RunInstances" };
const billing = (entry: CatalogueEntry) => ({
  platformDetails: entry.platformDetails ?? (entry.platform === "windows" ? "Windows" : "Linux/UNIX"),
  usageOperation: entry.usageOperation ?? (entry.platform === "windows" ? "RunInstances:0002" : "RunInstances"),
});

const PUBLISHERS: Record<string, Publisher> = {
  canonical: {
    ownerId: "099720109477",
    pattern:
      /^ubuntu(?<minimal>-minimal)?\/images\/hvm-ssd(-gp3)?\/ubuntu-(?<codename>bionic|focal|jammy|noble)-(?<version>\d\d\.\d\d)-(?<arch>amd64|arm64)-(?<kind>server|minimal)-(?<date>\d{8})(\.\d+)?$/,
    check(entry, name) {
      assert.equal(name.kind === "minimal", name.minimal !== undefined, "minimal images live under ubuntu-minimal/");
      assert.equal({ bionic: "18.04", focal: "20.04", jammy: "22.04", noble: "24.04" }[name.codename!], name.version);
      assert.match(
        entry.description,
        new RegExp(`^Canonical, Ubuntu${name.minimal ? " Minimal" : ""}, ${name.version!.replace(".", "\\.")}( LTS)?, ${name.arch} ${name.codename} image`),
      );
      assert.equal(entry.rootDeviceName, "/dev/sda1");
      assert.deepEqual(billing(entry), LINUX);
    },
  },
  amazonLinux: {
    ownerId: "137112412989",
    ownerAlias: "amazon",
    pattern:
      /^(?:al2023-ami-(?<al2023kind>minimal-|ecs-hvm-)?(?<al2023>2023\.\d+\.(?<date>\d{8})(\.\d+)?)-kernel-(?<kernel>6\.1|6\.12|6\.18)-(?<arch>x86_64|arm64)|amzn2-ami-(?<al2kind>hvm|kernel-5\.10-hvm|minimal-hvm|ecs-hvm)-(?<al2>2\.0\.(?<date2>\d{8})(\.\d+)?)-(?<arch2>x86_64|arm64)-(?<volume>gp2|ebs))$/,
    check(entry, name) {
      assert.equal(entry.rootDeviceName, "/dev/xvda");
      assert.deepEqual(billing(entry), LINUX);
      if (name.al2023) {
        const ecs = name.al2023kind === "ecs-hvm-";
        assert.equal(
          entry.description,
          ecs
            ? `Amazon Linux AMI ${name.al2023} ${name.arch} ECS HVM EBS`
            : `Amazon Linux 2023 AMI ${name.al2023} ${name.arch}${name.al2023kind ? " Minimal" : ""} HVM kernel-${name.kernel}`,
        );
        assert.equal(entry.imdsSupport, "v2.0", "AL2023 images require IMDSv2");
      } else {
        assert.equal(name.volume === "ebs", name.al2kind === "minimal-hvm" || name.al2kind === "ecs-hvm");
        assert.match(entry.description, /^Amazon Linux (2 (Kernel 5\.10 )?AMI|AMI) 2\.0\.\d{8}/);
      }
    },
  },
  windows: {
    ownerId: "801119661308",
    ownerAlias: "amazon",
    pattern:
      /^Windows_Server-(?<year>2016|2019|2022|2025)-English-(?<edition>Full|Core)-(?:Base|SQL_(?<sql>\d{4})_(?<sqlEdition>Standard|Enterprise|Web))-(?<serial>\d{4}\.\d{2}\.\d{2})$/,
    check(entry, name) {
      assert.equal(entry.platform, "windows");
      assert.equal(entry.architecture, "x86_64");
      assert.equal(entry.rootDeviceName, "/dev/sda1");
      const sql = {
        Standard: ["Windows with SQL Server Standard", "RunInstances:0006"],
        Enterprise: ["Windows with SQL Server Enterprise", "RunInstances:0102"],
        Web: ["Windows with SQL Server Web", "RunInstances:0202"],
      };
      const [platformDetails, usageOperation] = name.sqlEdition ? sql[name.sqlEdition as keyof typeof sql] : ["Windows", "RunInstances:0002"];
      assert.deepEqual(billing(entry), { platformDetails, usageOperation });
      assert.match(
        entry.description,
        new RegExp(
          `^Microsoft Windows Server ${name.year} .*Locale English ${name.sql ? `with SQL ${name.sqlEdition} ${name.sql} ` : ""}AMI provided by Amazon$`,
        ),
      );
      assert.equal(entry.creationDate.slice(0, 10), name.serial!.replaceAll(".", "-"));
    },
  },
  eks: {
    ownerId: "602401143452",
    ownerAlias: "amazon",
    pattern: /^amazon-eks-node-(?:al2023-(?<arch>x86_64|arm64)-standard-(?<k8s>1\.\d\d)|(?<k8sAl2>1\.\d\d))-v(?<date>\d{8})$/,
    check(entry, name) {
      assert.match(entry.description, new RegExp(`\\(k8s: ${(name.k8s ?? name.k8sAl2)!.replace(".", "\\.")}\\.\\d+,`));
      if (name.k8sAl2) assert.equal(entry.architecture, "x86_64");
      assert.deepEqual(billing(entry), LINUX);
    },
  },
  debian: {
    ownerId: "136693071363",
    pattern: /^debian-(?<release>11|12|13)-(?<arch>amd64|arm64)-(?<serial>(?<date>\d{8})-\d{4})$/,
    check(entry, name) {
      assert.equal(entry.description, `Debian ${name.release} (${name.serial})`);
      assert.equal(entry.rootDeviceName, "/dev/xvda");
      assert.deepEqual(billing(entry), LINUX);
    },
  },
  redhat: {
    ownerId: "309956199498",
    pattern: /^RHEL-(?<version>(8|9|10)\.\d+\.\d+)_HVM-(?<date>\d{8})-(?<arch>x86_64|arm64)-\d+-Hourly2-GP[23]$/,
    check(entry) {
      assert.equal(entry.description, "Provided by Red Hat, Inc.");
      assert.deepEqual(billing(entry), { platformDetails: "Red Hat Enterprise Linux", usageOperation: "RunInstances:0010" });
    },
  },
  suse: {
    ownerId: "013907871322",
    ownerAlias: "amazon",
    pattern: /^suse-sles-15-sp(?<sp>\d)-v(?<date>\d{8})-hvm-ssd-(?<arch>x86_64|arm64)$/,
    check(entry, name) {
      assert.equal(entry.description, `SUSE Linux Enterprise Server 15 SP${name.sp} (HVM, 64-bit, SSD-Backed)`);
      assert.deepEqual(billing(entry), { platformDetails: "SUSE Linux", usageOperation: "RunInstances:000g" });
    },
  },
};

const ARCH = { amd64: "x86_64", x86_64: "x86_64", arm64: "arm64" } as Record<string, string>;

describe("the built-in catalogue", () => {
  it("names every image as its publisher does, with the fields its name implies", () => {
    assert.ok(catalogue.entries.length > 150, `only ${catalogue.entries.length} images`);
    for (const entry of catalogue.entries) {
      const publishers = Object.values(PUBLISHERS).filter((p) => p.ownerId === entry.ownerId);
      assert.ok(publishers.length, `${entry.name}: owner ${entry.ownerId} is no publisher the test knows`);
      const publisher = publishers.find((p) => p.pattern.test(entry.name));
      assert.ok(publisher, `${entry.name} does not follow the naming of owner ${entry.ownerId}`);
      const name = publisher.pattern.exec(entry.name)!.groups!;
      try {
        assert.equal(entry.ownerAlias, publisher.ownerAlias);
        const arch = name.arch ?? name.arch2;
        if (arch) assert.equal(entry.architecture, ARCH[arch]);
        // A name's build date is the day the image was registered, or the day before.
        const date = name.date ?? name.date2;
        if (date) {
          const built = Date.parse(`${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T00:00:00Z`);
          const lag = (Date.parse(entry.creationDate) - built) / 86_400_000;
          assert.ok(lag > -1 && lag < 2, `created ${entry.creationDate}, ${lag.toFixed(1)} days from the name's date`);
        }
        if (entry.architecture === "arm64") assert.equal(entry.bootMode, "uefi", "arm64 images boot UEFI");
        assert.ok(entry.volumeSize! >= 2);
        assert.equal(entry.enaSupport, true);
        publisher.check(entry, name);
      } catch (error) {
        (error as Error).message = `${entry.name}: ${(error as Error).message}`;
        throw error;
      }
    }
  });

  it("holds every series that documentation's lookups copy, with several serials", () => {
    const series = [
      "ubuntu/images/hvm-ssd/ubuntu-bionic-18.04-amd64-server-*",
      "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-arm64-server-*",
      "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
      "ubuntu/images/hvm-ssd-gp3/ubuntu-jammy-22.04-arm64-server-*",
      "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
      "ubuntu-minimal/images/hvm-ssd/ubuntu-jammy-22.04-amd64-minimal-*",
      "ubuntu-minimal/images/hvm-ssd-gp3/ubuntu-noble-24.04-arm64-minimal-*",
      "amzn2-ami-hvm-*-x86_64-gp2",
      "amzn2-ami-kernel-5.10-hvm-*-arm64-gp2",
      "amzn2-ami-minimal-hvm-*-x86_64-ebs",
      "al2023-ami-2023.*-kernel-6.1-x86_64",
      "al2023-ami-2023.*-kernel-6.12-arm64",
      "al2023-ami-2023.*-kernel-6.18-x86_64",
      "al2023-ami-minimal-2023.*-kernel-6.1-arm64",
      "al2023-ami-ecs-hvm-*-x86_64",
      "amzn2-ami-ecs-hvm-*-x86_64-ebs",
      "amazon-eks-node-al2023-x86_64-standard-1.33-v*",
      "amazon-eks-node-1.32-v*",
      "debian-11-amd64-*",
      "debian-12-arm64-*",
      "debian-13-amd64-*",
      "RHEL-8.*_HVM-*-x86_64-*",
      "RHEL-9.*_HVM-*-arm64-*",
      "suse-sles-15-sp*-hvm-ssd-x86_64",
      "Windows_Server-2016-English-Full-Base-*",
      "Windows_Server-2019-English-Core-Base-*",
      "Windows_Server-2022-English-Full-Base-*",
      "Windows_Server-2025-English-Full-Base-*",
      "Windows_Server-2019-English-Full-SQL_2019_Standard-*",
      "Windows_Server-2022-English-Full-SQL_2022_Enterprise-*",
    ];
    for (const wildcard of series) {
      const pattern = new RegExp(`^${wildcard.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`);
      const found = catalogue.entries.filter((e) => pattern.test(e.name));
      assert.ok(found.length >= 2, `${wildcard}: ${found.length} images`);
      assert.ok(new Set(found.map((e) => e.creationDate)).size === found.length, `${wildcard}: serials share a creation date`);
    }
  });

  it("points each public parameter at the newest image of its own kind", () => {
    const newest = (pattern: RegExp) =>
      catalogue.entries.filter((e) => pattern.test(e.name)).sort((a, b) => b.creationDate.localeCompare(a.creationDate))[0]!.name;
    const expected: Record<string, RegExp> = {
      "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64": /^al2023-ami-2023\..*-kernel-6\.1-x86_64$/,
      "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.12-arm64": /^al2023-ami-2023\..*-kernel-6\.12-arm64$/,
      "/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-default-arm64": /^al2023-ami-minimal-.*-kernel-6\.1-arm64$/,
      "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2": /^amzn2-ami-hvm-.*-x86_64-gp2$/,
      "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id": /^ubuntu\/images\/hvm-ssd\/ubuntu-jammy-22\.04-amd64-server-/,
      "/aws/service/canonical/ubuntu/server/noble/stable/current/arm64/hvm/ebs-gp3/ami-id": /^ubuntu\/images\/hvm-ssd-gp3\/ubuntu-noble-24\.04-arm64-server-/,
      "/aws/service/debian/release/12/latest/amd64": /^debian-12-amd64-/,
      "/aws/service/debian/release/trixie/latest/arm64": /^debian-13-arm64-/,
      "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base": /^Windows_Server-2022-English-Full-Base-/,
      "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id": /^al2023-ami-ecs-hvm-.*-x86_64$/,
      "/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/arm64/standard/recommended/image_id": /^amazon-eks-node-al2023-arm64-standard-1\.33-/,
    };
    for (const [path, pattern] of Object.entries(expected)) {
      assert.equal(catalogue.parameters.get(path)?.entry.name, newest(pattern), path);
    }
    // A serial's own parameter names that serial.
    assert.equal(catalogue.parameters.get("/aws/service/debian/release/12/20241201-1948/amd64")?.entry.name, "debian-12-amd64-20241201-1948");
    for (const [path, { entry }] of catalogue.parameters) {
      const arch = /\/(amd64|arm64|x86_64)(\/|-|$)/.exec(path)?.[1];
      if (arch) assert.equal(entry.architecture, ARCH[arch], `${path} names ${entry.name}`);
    }
  });

  it("refuses an operator's entries whose ids clash, naming both", () => {
    const base = {
      ownerId: "123412341234",
      architecture: "x86_64" as const,
      rootDeviceName: "/dev/xvda",
      volumeSize: 2,
      creationDate: "2026-01-01T00:00:00.000Z",
      description: "",
    };
    assert.throws(
      () =>
        withOperatorEntries(
          catalogue,
          [
            { ...base, name: "first-image", imageId: "ami-0123456789abcdef0" },
            { ...base, name: "second-image", imageId: { "eu-west-1": "ami-0123456789abcdef0" } },
          ],
          "catalogue.json",
        ),
      /catalogue\.json: the images first-image and second-image both have the id ami-0123456789abcdef0 in eu-west-1/,
    );
    assert.throws(
      () => withOperatorEntries(catalogue, [{ ...base, name: "pinned", imageId: { "mars-north-1": "ami-12345678" } }], "catalogue.json"),
      /pins an id in mars-north-1/,
    );
    assert.throws(
      () =>
        withOperatorEntries(
          catalogue,
          [
            { ...base, name: "twice" },
            { ...base, name: "twice" },
          ],
          "catalogue.json",
        ),
      /gives the image twice twice/,
    );
  });
});
