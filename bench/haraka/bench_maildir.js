// Benchmark peer: store each accepted message in a Maildir before the 250, durably.
// tmp/ file written and fsynced, linked into new/, tmp name removed, new/ fsynced: the same
// work the other peers do. The Maildir comes from BENCH_MAILDIR. Reverse DNS is skipped (Haraka
// asks for every client otherwise), as Hato and Postfix run without it in the benchmark.
'use strict'

const fs = require('node:fs/promises')
const os = require('node:os')
const path = require('node:path')

exports.register = function () {
  this.maildir = process.env.BENCH_MAILDIR
  this.sequence = 0
  this.new_dir = null
  this.register_hook('lookup_rdns', 'no_rdns')
  this.register_hook('queue', 'store')
}

exports.no_rdns = function (next) {
  next(OK, 'localhost')
}

exports.store = function (next, connection) {
  const txn = connection.transaction
  const name = `${Date.now()}.P${process.pid}Q${++this.sequence}.${os.hostname()}`
  const tmp = path.join(this.maildir, 'tmp', name)
  const prefix = txn.rcpt_to.map((rcpt) => `Delivered-To: ${address(rcpt)}\r\n`).join('')
  txn.message_stream.get_data({ line_endings: '\r\n' }, (data) => {
    this.write(tmp, name, Buffer.concat([Buffer.from(prefix), data])).then(
      () => next(OK, 'Ok: stored'),
      (err) => {
        connection.logerror(this, `maildir: ${err}`)
        next(DENYSOFT, 'cannot store the message')
      },
    )
  })
}

// Older Haraka address objects have address(), newer ones an address property.
function address(rcpt) {
  return typeof rcpt.address === 'function' ? rcpt.address() : rcpt.address
}

exports.write = async function (tmp, name, data) {
  const file = await fs.open(tmp, 'wx', 0o600)
  try {
    await file.writeFile(data)
    await file.sync()
  } finally {
    await file.close()
  }
  await fs.link(tmp, path.join(this.maildir, 'new', name))
  await fs.unlink(tmp)
  if (this.new_dir === null) {
    this.new_dir = await fs.open(path.join(this.maildir, 'new'), 'r')
  }
  await this.new_dir.sync()
}
