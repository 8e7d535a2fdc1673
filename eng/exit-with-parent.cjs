// Preloaded (node --require) into the Azurite that FuncProxy.Server and the tests start: the starting process holds
// this process's standard input open and never writes to it, so end-of-file on standard input means the starter has
// gone, however it went (a SIGKILL runs none of its own clean-up). Azurite then exits instead of living on as an orphan.
'use strict';
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
