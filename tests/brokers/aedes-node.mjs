// One node of a two-node MQTT cluster for the end-to-end tests (tests/e2e/conftest.py,
// MQB_BROKER=aedes): aedes from npm, whose nodes share retained messages, sessions and wills
// (aedes-persistence-redis) and their message bus (mqemitter-redis) through one redis-server.
// Usage: node aedes-node.mjs MQTT_PORT REDIS_PORT NODE_ID; prints "ready" once listening.
import { createServer } from 'node:net'
import { createRequire } from 'node:module'
import { Aedes } from 'aedes'

const require = createRequire(import.meta.url)
const [port, redisPort, id] = process.argv.slice(2)
const redis = { host: '127.0.0.1', port: Number(redisPort) }
const mq = require('mqemitter-redis')(redis)
const persistence = require('aedes-persistence-redis')(redis)
const broker = await Aedes.createBroker({ id, mq, persistence })
const server = createServer(broker.handle)
server.listen(Number(port), '127.0.0.1', () => console.log('ready'))
process.on('SIGTERM', () => server.close(() => broker.close(() => process.exit(0))))
