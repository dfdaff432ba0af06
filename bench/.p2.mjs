import autocannon from "autocannon";
const [url, conns, method] = [process.argv[2], Number(process.argv[3] ?? 32), process.argv[4] ?? "GET"];
const r = await autocannon({ url, method, connections: conns, duration: 4, body: method === "POST" ? "Action=DescribeRegions&Version=2016-11-15" : undefined, headers: { "content-type": "application/x-www-form-urlencoded" } });
console.log(url, conns, "rps", r.requests.average, "p50", r.latency.p50, "p99", r.latency.p99, "non2xx", r.non2xx);
