export default {
  files: ['dist/test/unit/**/*.test.js', 'dist/test/integration/**/*.test.js'],
  timeout: '60s',
};
