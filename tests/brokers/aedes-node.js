// One node of a two-node MQTT cluster for the end-to-end tests (tests/e2e/conftest.py,
// MQB_BROKER=aedes): aedes from npm, whose nodes share retained messages, sessions and wills
// (aedes-persistence-redis) and their message bus (mqemitter-redis) through one redis-server.
// Usage: node aedes-node.js MQTT_PORT REDIS_PORT NODE_ID; prints "ready" once listening.
'use strict'
const net = require('node:net')
const [port, redisPort, id] = process.argv.slice(2)
const redis = { host: '127.0.0.1', port: Number(redisPort) }
const broker = require('aedes')({
  id,
  mq: require('mqemitter-redis')(redis),
  persistence: require('aedes-persistence-redis')(redis)
})
const server = net.createServer(broker.handle)
server.listen(Number(port), '127.0.0.1', () => console.log('ready'))
// Stopped, it goes at once, as a broker that dies: its clients see the connection drop.
process.on('SIGTERM', () => process.exit(0))
