// The AWS SDK for JavaScript v3's IMDS client (@aws-sdk/ec2-metadata-service), as a handler
// would use it (run by tests/tests/clients.rs). Prints one JSON line.
const { MetadataService } = require("@aws-sdk/ec2-metadata-service");

(async () => {
  const md = new MetadataService({ retries: 0, httpOptions: { timeout: 5000 } });
  const out = {};
  out.instance_id = await md.request("/latest/meta-data/instance-id", {});
  out.region = await md.request("/latest/meta-data/placement/region", {});
  out.spot = JSON.parse(await md.request("/latest/meta-data/spot/instance-action", {}));
  out.token = (await md.fetchMetadataToken()).length > 0;
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(`SDK error: ${e.message} (status ${e.statusCode})`);
  process.exit(1);
});
