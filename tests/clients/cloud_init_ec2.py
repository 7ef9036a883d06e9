"""cloud-init's own EC2 datasource crawling the IMDS (run by tests/tests/clients.rs).

argv[1]: the unpacked cloud-init package's dist-packages directory. Prints one JSON line.
Nothing here touches the machine: paths go to a temporary directory, no distro is given.
"""
import json
import logging
import sys
import tempfile

sys.path.insert(0, sys.argv[1])
from cloudinit import helpers  # noqa: E402
from cloudinit.sources import DataSourceEc2 as ec2  # noqa: E402

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
# Removed when the script ends, however it ends (the finalizer runs at exit).
tmp_dir = tempfile.TemporaryDirectory(prefix="spot-sim-cloud-init-")
tmp = tmp_dir.name
paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
cfg = {
    "datasource": {
        "Ec2": {
            "metadata_urls": ["http://169.254.169.254"],
            "max_wait": 10,
            "timeout": 5,
        }
    }
}
ds = ec2.DataSourceEc2(cfg, None, paths)
# The platform check reads DMI, which says nothing of EC2 on a test machine.
ds._cloud_name = ec2.CloudNames.AWS
crawled = ds.crawl_metadata()
md = crawled.get("meta-data", {})
identity = crawled.get("dynamic", {}).get("instance-identity", {})
doc = identity.get("document") or {}
if not isinstance(doc, dict):
    doc = json.loads(doc)
user_data = crawled.get("user-data")
print(
    json.dumps(
        {
            "api_version": crawled.get("_metadata_api_version"),
            "token": bool(ds._api_token),
            "instance_id": md.get("instance-id"),
            "region": md.get("placement", {}).get("region"),
            "zone_id": md.get("placement", {}).get("availability-zone-id"),
            "identity_region": doc.get("region"),
            "signed_forms": sorted(k for k in identity if k != "document"),
            "spot": md.get("spot", {}).get("instance-action"),
            "macs": list(md.get("network", {}).get("interfaces", {}).get("macs", {}).keys()),
            "user_data": user_data.decode() if isinstance(user_data, bytes) else user_data,
        }
    )
)
