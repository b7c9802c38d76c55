import test from 'ava';
import {
  attr,
  delLink,
  errnoName,
  getLink,
  macBytes,
  NetlinkError,
  newAddr,
  newVeth,
  parseLink,
  parseReplies,
  replaceDefaultRoute,
  setLinkUp,
} from '../../agent/net/netlink/codec.js';

const hex = (b: Buffer): string => b.toString('hex');

test('attributes are length-prefixed and padded to 4 bytes', (t) => {
  t.is(hex(attr(3, Buffer.from('ab\0'))), '0700030061620000');
  t.is(hex(attr(1, Buffer.alloc(4, 0xff))), '08000100ffffffff');
});

test('RTM_DELLINK and RTM_SETLINK by name, byte for byte', (t) => {
  // len 36, type 17, flags REQUEST|ACK, seq 5, port 0; ifinfomsg zero; IFLA_IFNAME "gm0\0"
  t.is(
    hex(delLink(5, 'gm0')),
    '28000000' + '1100' + '0500' + '05000000' + '00000000' + '00'.repeat(16) + '08000300' + '676d3000',
  );
  t.is(
    hex(setLinkUp(6, 'gm0')),
    '28000000' +
      '1300' +
      '0500' +
      '06000000' +
      '00000000' +
      '0000000000000000' +
      '01000000' +
      '01000000' +
      '08000300676d3000',
  );
  t.is(hex(getLink(7, 'gm0')).slice(8, 16), '12000100', 'GETLINK without ACK: answered by the link itself');
});

test('RTM_NEWADDR: local and address, prefix, index; create|excl', (t) => {
  t.is(
    hex(newAddr(1, 9, '198.18.0.7/24')),
    '28000000' +
      '1400' +
      '0506' +
      '01000000' +
      '00000000' +
      '02180000' +
      '09000000' +
      '08000200c6120007' +
      '08000100c6120007',
  );
  t.throws(() => newAddr(1, 9, '198.18.0.7/33'));
  t.throws(() => newAddr(1, 9, '198.18.0/24'));
});

test('RTM_NEWROUTE default via gateway: main table, boot proto, create|replace', (t) => {
  t.is(
    hex(replaceDefaultRoute(2, 9, '198.18.0.1')),
    '2c000000' +
      '1800' +
      '0505' +
      '02000000' +
      '00000000' +
      '02000000fe030001' +
      '00000000' +
      '08000500c6120001' +
      '0800040009000000',
  );
});

test('RTM_NEWLINK veth: nested linkinfo, peer with MAC, MTU and netns pid', (t) => {
  const m = newVeth(3, {
    name: 'gm1',
    mtu: 1400,
    up: true,
    peer: { name: 'eth0', mac: '0a:58:c6:12:00:07', mtu: 1400, netnsPid: 42 },
  });
  t.is(m.readUInt32LE(0), m.length);
  t.is(m.readUInt16LE(4), 16);
  t.is(m.readUInt16LE(6), 0x1 | 0x4 | 0x400 | 0x200);
  const body = m.subarray(16);
  t.is(body.readUInt32LE(8), 1, 'up');
  t.is(body.readUInt32LE(12), 1);
  const expectPeer =
    '00'.repeat(16) +
    '0900030065746830' +
    '00000000' +
    '0a0001000a58c6120007' +
    '0000' +
    '0800040078050000' +
    '080013002a000000';
  const peer =
    'xxxx0100'.replace('xxxx', (4 + expectPeer.length / 2).toString(16).padStart(2, '0') + '00') + expectPeer;
  const data = (4 + peer.length / 2).toString(16).padStart(2, '0') + '000200' + peer;
  const kind = '0900010076657468' + '00000000';
  const info = (4 + (kind.length + data.length) / 2).toString(16).padStart(2, '0') + '001200' + kind + data;
  t.is(hex(body.subarray(16)), '08000300676d3100' + '0800040078050000' + info);
  const noNs = newVeth(4, { name: 'gm1', mtu: 1400, up: false, peer: { name: 'p', mtu: 1400 } });
  t.false(hex(noNs).includes('080013'), 'no netns, no MAC: peer stays here');
  t.is(noNs.readUInt32LE(24), 0, 'not up');
  t.throws(() => macBytes('0a:58:zz:12:00:07'));
});

test('replies: ACK, error with errno, link answer', (t) => {
  const ack = Buffer.from('24000000' + '0200' + '0001' + '05000000' + '00000000' + '00000000' + '00'.repeat(16), 'hex');
  const err = Buffer.from(ack);
  err.writeUInt32LE(7, 8);
  err.writeInt32LE(-17, 16);
  const r = parseReplies(Buffer.concat([ack, err]));
  t.deepEqual(
    r.map((x) => [x.type, x.seq, x.errno]),
    [
      [2, 5, 0],
      [2, 7, 17],
    ],
  );
  t.is(errnoName(17), 'EEXIST');
  t.is(errnoName(19), 'ENODEV');
  const e = new NetlinkError('add veth gm1', 17);
  t.is(e.code, 'EEXIST');
  t.is(e.message, 'add veth gm1: EEXIST');
  const link = Buffer.concat([
    Buffer.from('00000100' + '0b000000' + '43100100' + '00000000', 'hex'),
    attr(3, Buffer.from('eth7\0')),
  ]);
  t.deepEqual(parseLink(link), { index: 11, flags: 0x11043, name: 'eth7' });
  t.deepEqual(parseReplies(Buffer.from('ff00', 'hex')), [], 'a short datagram yields nothing');
});
