// The Express original (@m-software-engineering/heat-collector), as its README sets it up, for the
// benchmark. Configured by environment variables:
//   HEAT_DIALECT    sqlite | pg | mysql | mongodb
//   DATABASE_URL    connection string (pg, mysql, mongodb)
//   SQLITE_FILE     database file (sqlite)
//   PORT            listen port (127.0.0.1)
//   RATE_MAX        requests per RATE_WINDOW_MS per project key + IP (default: 1e9, never limits)
//   LOG_LEVEL       debug | info | warn | error (default warn)
//   NODE_WORKERS    0 = one plain process (default); N = node:cluster with N workers on one port
import cluster from "node:cluster";
import express from "express";
import { createCollector } from "@m-software-engineering/heat-collector";

const env = process.env;
const dialect = env.HEAT_DIALECT || "sqlite";
const port = Number(env.PORT || 3000);
const workers = Number(env.NODE_WORKERS || 0);

const db =
  dialect === "sqlite"
    ? { dialect, file: env.SQLITE_FILE || "./heat-tracker.db" }
    : { dialect, connectionString: env.DATABASE_URL };

// The original's autoMigrate cannot run on MySQL/MariaDB: its CREATE TABLE names a column `key`
// unquoted (a reserved word), a syntax error. Same DDL as its autoMigrate, with `key` quoted.
async function mysqlTables() {
  const mysql = await import("mysql2/promise");
  const conn = await mysql.createConnection(env.DATABASE_URL);
  const ddl = [
    "CREATE TABLE IF NOT EXISTS projects (id VARCHAR(64) PRIMARY KEY, `key` VARCHAR(255) NOT NULL UNIQUE, name VARCHAR(255) NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS users (id VARCHAR(64) PRIMARY KEY, project_id VARCHAR(64) NOT NULL, external_id VARCHAR(255) NOT NULL, traits_json TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS sessions (id VARCHAR(64) PRIMARY KEY, project_id VARCHAR(64) NOT NULL, user_id VARCHAR(64), started_at BIGINT NOT NULL, last_seen_at BIGINT NOT NULL, first_path VARCHAR(1024) NOT NULL, user_agent TEXT, device_json TEXT, ip_hash VARCHAR(255))",
    "CREATE TABLE IF NOT EXISTS events (id VARCHAR(64) PRIMARY KEY, project_id VARCHAR(64) NOT NULL, session_id VARCHAR(64) NOT NULL, user_id VARCHAR(64), type VARCHAR(64) NOT NULL, ts BIGINT NOT NULL, path VARCHAR(1024) NOT NULL, selector TEXT, x INT, y INT, scroll_depth INT, meta_json TEXT)",
  ];
  for (const statement of ddl) await conn.query(statement);
  await conn.end();
}

async function collectorFor(autoMigrate) {
  return createCollector({
    db,
    auth: { mode: "projectKey" },
    autoMigrate: autoMigrate && dialect !== "mysql",
    ingestion: {
      maxBodyBytes: 1_000_000,
      rateLimit: { windowMs: Number(env.RATE_WINDOW_MS || 10_000), max: Number(env.RATE_MAX || 1e9) },
    },
    logging: { level: env.LOG_LEVEL || "warn" },
  });
}

async function serve() {
  const collector = await collectorFor(workers === 0);
  const app = express();
  app.use(collector.router);
  app.listen(port, "127.0.0.1", () => {
    console.error(JSON.stringify({ msg: "original listening", port, dialect, pid: process.pid }));
  });
}

if (workers > 0 && cluster.isPrimary) {
  // Migrate once in the primary, so workers do not race on CREATE TABLE.
  if (dialect === "mysql") await mysqlTables();
  await collectorFor(true);
  for (let i = 0; i < workers; i += 1) cluster.fork();
  cluster.on("exit", (worker, code) => {
    console.error(JSON.stringify({ msg: "worker exited", pid: worker.process.pid, code }));
  });
} else {
  if (dialect === "mysql" && workers === 0) await mysqlTables();
  await serve();
}
