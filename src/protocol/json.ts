// JSON answers of the AWS JSON protocols Kiln speaks (the EBS direct APIs' REST-JSON, SSM's
// JSON 1.1): their timestamps are epoch seconds, not ISO text.
export const toAwsJson = (value: unknown) =>
  JSON.stringify(value, function (key, v) {
    const raw = (this as Record<string, unknown>)[key];
    return raw instanceof Date ? raw.getTime() / 1000 : v;
  });
