// A minimal WebSocket client for the walkthrough: prints every frame of a session socket and exits
// after the first reply.completed or reply.failed (or after 60 s).
//   node scripts/ws-client.mjs "ws://127.0.0.1:8080/ws/sessions/<id>?ws_token=<token>"
import WebSocket from 'ws';

const url = process.argv[2];
if (!url) {
  console.error('usage: node scripts/ws-client.mjs <ws url with ws_token>');
  process.exit(2);
}
const ws = new WebSocket(url);
const timer = setTimeout(() => {
  console.error('no reply within 60 s');
  process.exit(1);
}, 60_000);
ws.on('unexpected-response', (_req, res) => {
  console.error(`connection refused: HTTP ${res.statusCode}`);
  process.exit(1);
});
ws.on('open', () => console.error('connected; waiting for frames…'));
ws.on('message', (data) => {
  const frame = JSON.parse(data.toString());
  console.log(JSON.stringify(frame));
  if (frame.type === 'reply.completed' || frame.type === 'reply.failed') {
    clearTimeout(timer);
    ws.close();
  }
});
ws.on('close', () => process.exit(0));
ws.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
